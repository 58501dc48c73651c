"""t2i-audit auditing: CLIP indexes, memorization, watermark and bias probes.

May import ``bench``; never imported by ``bench``.
"""
