# Ding et al. (CCS 2018) iSVT2 (Lyu, Su and Li 2017, Alg. 6, after Lee and Clifton): does
# not stop after c = 1 positive answers. Incorrect.
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# entry: common_conditions
# epsilon: 0.5
# expect: needs_review
# expect-rules: hand_written_noise
# forbid-rules: no_mechanism, raw_output
# audit: violation
import numpy as np

CONDITIONS = ["asthma", "diabetes", "copd", "obesity", "hypertension"]
THRESHOLD = 40


def common_conditions(df):
    epsilon = 0.5
    c = 1
    rho = np.random.laplace(0.0, 2 / epsilon)
    out = []
    for name in CONDITIONS:
        nu = np.random.laplace(0.0, 4 * c / epsilon)
        out.append(bool(df[name].sum() + nu >= THRESHOLD + rho))
    return out
