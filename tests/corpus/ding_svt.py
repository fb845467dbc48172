# Ding et al. (CCS 2018): the sparse vector technique (Lyu, Su and Li 2017, Alg. 1) with
# c = 1: which condition first affects more than THRESHOLD patients. Correct.
# On the patients mock of test_policies_corpus the survey columns are missing: the run
# fails there and only static analysis applies; tests/test_audit_ding.py audits it on a
# survey mock.
# Ding et al.'s neighbours: the queries may move in opposite directions (a changed row
# leaves one condition for others), and ten queries, as in StatDP's tests.
# privacy-unit: change
# entry: common_conditions
# epsilon: 0.5
# expect: needs_review
# expect-rules: hand_written_noise
# forbid-rules: no_mechanism, raw_output
# audit: none
import numpy as np

CONDITIONS = [
    "asthma", "diabetes", "copd", "obesity", "hypertension",
    "arthritis", "migraine", "eczema", "anaemia", "insomnia",
]
THRESHOLD = 40


def common_conditions(df):
    epsilon = 0.5
    c = 1
    eps1, eps2 = epsilon / 2, epsilon / 2
    rho = np.random.laplace(0.0, 1 / eps1)
    out, count = [], 0
    for name in CONDITIONS:
        nu = np.random.laplace(0.0, 2 * c / eps2)
        if df[name].sum() + nu >= THRESHOLD + rho:
            out.append(True)
            count += 1
            if count >= c:
                break
        else:
            out.append(False)
    return out
