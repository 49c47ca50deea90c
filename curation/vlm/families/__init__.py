"""One module per VLM family group; each adds its adapters to the registry with ``@FAMILIES.add`` (curation/vlm/registry.py)."""
