"""The model catalogue: model sets as data (`model_configs/*.json`), tag vocabularies, what is on disk, devices
and the vision settings."""
