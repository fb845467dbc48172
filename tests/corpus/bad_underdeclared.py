# Two releases of epsilon 0.5 each, but the request declares 0.5 in total.
# entry: two_counts
# epsilon: 0.5
# mechanisms: make_laplace
# expect: blocked
# expect-rules: epsilon_exceeds_declaration
def two_counts(df):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()
    count = space >> dp.t.then_count() >> dp.m.then_laplace(scale=2.0)
    old = df[df["age"] > 60]["age"].tolist()
    return count(df["age"].tolist()), count(old)
