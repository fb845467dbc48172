# A Context request: the function only sees an OpenDP Context bound to the budget.
# entry: cohort
# kind: context
# epsilon: 0.5
# queries: 2
# expect: pass
def cohort(ctx):
    import opendp.prelude as dp
    import polars as pl

    count = ctx.query().select(dp.len()).release().collect().item()
    mean = ctx.query().select(pl.col("age").fill_null(50.0).dp.mean(bounds=(18.0, 90.0)))
    return {"patients": count, "mean_age": mean.release().collect().item()}
