"""Where cases come from: manifests, folder scans, MedMNIST-style arrays, the synthetic cohort."""
