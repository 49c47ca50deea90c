"""One module per VLM family group; each registers its adapters with ``curation.vlm.register``."""
