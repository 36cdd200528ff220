"""FLARE 2024 evaluation: DSC and NSD per organ (`metrics`), per case (`cases`), the report (`report`), and
wall time / peak memory of a prediction command (`efficiency`); commands `nnunet-cdl evaluate` and `bench`."""
