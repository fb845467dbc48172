# Ding et al.'s histogram with OpenDP: age bands (disjoint, so adding or removing one row
# moves one count by one) with make_laplace at scale 1/epsilon: correct under add/remove.
# The checker's dry-run measures OpenDP's map at the local sensitivity of a *changed* row
# (two bins move: 2), so it reports epsilon 1 and blocks; the audit (add/remove) must not
# raise anything.
# entry: age_histogram
# epsilon: 0.5
# mechanisms: make_laplace
# expect: blocked
# expect-rules: epsilon_exceeds_declaration
# forbid-rules: no_mechanism, audit_epsilon_exceeds_declaration
# audit: none
import numpy as np


def age_histogram(df):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    epsilon = 0.5
    counts = np.histogram(df["age"].clip(18, 90), bins=[18, 30, 45, 60, 75, 91])[0]
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    laplace = dp.m.make_laplace(*space, scale=1 / epsilon)
    return laplace([float(c) for c in counts])
