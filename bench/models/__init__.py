"""Loading text-to-image pipelines: hub ids, local directories, single files, built-ins."""
