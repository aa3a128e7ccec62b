"""The selection stage: competing runs, each tested once, the comparison, the champion, re-runs."""
