"""Streamlit dashboard. Reads run directories only; never imports torch."""
