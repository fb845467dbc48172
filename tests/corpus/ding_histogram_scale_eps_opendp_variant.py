# Ding et al.'s histogram with OpenDP: age bands (disjoint, so adding or removing one row
# moves one count by one) with make_laplace at scale epsilon: incorrect. The dry-run
# blocks it (OpenDP's map); tests/test_audit_ding.py shows the audit catches it too.
# entry: age_histogram
# epsilon: 0.5
# mechanisms: make_laplace
# expect: blocked
# expect-rules: epsilon_exceeds_declaration
# forbid-rules: no_mechanism
# audit: violation
# audit-budget: 3.0
import numpy as np


def age_histogram(df):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    epsilon = 0.5
    counts = np.histogram(df["age"].clip(18, 90), bins=[18, 30, 45, 60, 75, 91])[0]
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    laplace = dp.m.make_laplace(*space, scale=epsilon)
    return laplace([float(c) for c in counts])
