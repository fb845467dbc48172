# A whole OpenDP pipeline from the rows: OpenDP proves the sensitivity itself.
# entry: age_sum
# epsilon: 0.5
# mechanisms: make_laplace
# expect: needs_review
# It is a raw-data request: however sound the pipeline looks, the function
# holds the table, so a person decides (needs_review).
def age_sum(df):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()
    pipeline = (
        space
        >> dp.t.then_clamp((18.0, 90.0))
        >> dp.t.then_sum()
        >> dp.m.then_laplace(scale=180.0)
    )
    return pipeline(df["age"].astype(float).tolist())
