# The tutorial's input perturbation: Laplace noise on every row of three clipped columns
# (Series.apply), then a linear model fitted on the noisy columns only. One row is touched
# by three releases of epsilon 0.3: parallel over rows, sequential over columns -> 0.9.
# entry: train_dp_model
# epsilon: 0.9
# mechanisms: make_laplace
# expect: needs_review
# forbid-rules: epsilon_exceeds_declaration, non_dp_model, raw_output
def train_dp_model(df):
    import opendp.prelude as dp
    from sklearn.linear_model import LinearRegression

    dp.enable_features("contrib")
    epsilon = 0.3
    sensitivity = 1.0
    input_space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)
    laplace = dp.m.make_laplace(*input_space, scale=sensitivity / epsilon)

    def add_noise(value):
        return laplace(float(value))

    noisy = df[["age", "bmi", "target"]].copy()
    noisy["age"] = ((df["age"] - 18) / 72).clip(0, 1).apply(add_noise)
    noisy["bmi"] = ((df["bmi"] - 15) / 30).clip(0, 1).apply(add_noise)
    noisy["target"] = (df["target"] / 350).clip(0, 1).apply(add_noise)
    model = LinearRegression().fit(noisy[["age", "bmi"]], noisy["target"])
    return model.coef_, float(model.intercept_)
