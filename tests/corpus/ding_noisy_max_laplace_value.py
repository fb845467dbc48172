# Ding et al. (CCS 2018): report noisy max with Laplace noise of scale 2/epsilon,
# returning the noisy maximum itself: incorrect.
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# entry: largest_condition_count
# epsilon: 0.5
# expect: needs_review
# expect-rules: hand_written_noise
# forbid-rules: no_mechanism, raw_output
# audit: violation
# audit-budget: 8.0
# The best event is a low value (every count noisy-low), rare: at 20,000 fresh runs per
# table the event chosen was sometimes a worse one (0.36 and 0.48 against 0.5 in 2 of
# ~30 audits); at 40,000 the least of 20 was 0.80 (the 8 s still suffice here).
# audit-max-trials: 40000
import numpy as np

CONDITIONS = ["asthma", "diabetes", "copd", "obesity", "hypertension"]


def largest_condition_count(df):
    epsilon = 0.5
    counts = np.array([df[name].sum() for name in CONDITIONS], dtype=float)
    noisy = counts + np.random.laplace(0.0, 2 / epsilon, size=len(counts))
    return float(np.max(noisy))
