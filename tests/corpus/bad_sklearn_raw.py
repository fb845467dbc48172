# A scikit-learn model fitted on the raw features, where the policy requires DP.
# entry: forecast
# epsilon: 0.5
# expect: blocked
# expect-rules: non_dp_model
def forecast(df):
    from sklearn.ensemble import RandomForestRegressor

    model = RandomForestRegressor(n_estimators=5, random_state=0)
    model.fit(df[["age", "bmi"]].to_numpy(), df["target"].to_numpy())
    return model
