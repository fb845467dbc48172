# Ding et al. (CCS 2018): report noisy max with Laplace noise of scale 2/epsilon,
# returning the index: correct.
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# entry: most_common_condition
# epsilon: 0.5
# expect: needs_review
# expect-rules: hand_written_noise
# forbid-rules: no_mechanism, raw_output
# audit: none
import numpy as np

CONDITIONS = ["asthma", "diabetes", "copd", "obesity", "hypertension"]


def most_common_condition(df):
    epsilon = 0.5
    counts = np.array([df[name].sum() for name in CONDITIONS], dtype=float)
    noisy = counts + np.random.laplace(0.0, 2 / epsilon, size=len(counts))
    return int(np.argmax(noisy))
