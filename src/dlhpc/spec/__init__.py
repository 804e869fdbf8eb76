"""The spec: YAML with line numbers, layered and validated (docs/spec.md); its sweep into trials; the site policy."""
