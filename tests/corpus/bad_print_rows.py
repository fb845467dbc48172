# A DP release, but the private rows are printed on the way.
# entry: noisy_count
# epsilon: 0.5
# mechanisms: make_laplace
# expect: blocked
# expect-rules: prints_data
def noisy_count(df):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    print(df.head(20))
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()
    count = space >> dp.t.then_count() >> dp.m.then_laplace(scale=2.0)
    return count(df["age"].tolist())
