"""Evidence: metrics at an operating point, patient-level bootstrap intervals, calibration and
the choice of an operating point. Pure numerics: no MLflow, no Lightning."""
