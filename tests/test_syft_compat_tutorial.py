"""OpenMined's PySyft + OpenDP tutorial, run with ``from researcher_kit import syft_compat as sy``.

The steps below are the tutorial's ("Getting Started with Differential Privacy in PySyft"),
in its order and words, against a real development datasite in a child process. Changes:

- the tutorial downloads ``pings_small.csv``; we cannot, so ``pings_csv`` makes a table of
  the same shape (id, gender MALE/FEMALE, age, unix timestamps, several pings per user per
  day over a few days, plus the two columns the tutorial drops);
- OpenDP 0.16 needs ``dp.atom_domain(T=float, nan=False)``;
- PySyft lets a bare ``request.approve()`` through; here the policy checker reviews first,
  and where its report blocks (the function prints data and fits a non-DP forest), the
  owner approves with a written justification, as a real owner would have to.
"""

# ruff: noqa: E501, F401, I001  (the tutorial's code is kept as written)

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from researcher_kit import syft_compat as sy

pytestmark = [pytest.mark.integration, pytest.mark.one_database]

try:  # the notebook's display(); the sandbox provides its own on the site
    from IPython.display import display
except ImportError:

    def display(obj: object) -> None:
        print(obj)


def pings_csv(n_ids: int = 1100, days: int = 3, seed: int = 7) -> pd.DataFrame:
    """A stand-in for the tutorial's pings_small.csv: one row per ping.

    Pings of a user-day fall between 10:00 and 13:00 UTC, so the day a ping belongs to is
    the same in any time zone within +-10 hours (the tutorial uses local time).
    """
    rng = np.random.default_rng(seed)
    start = 1533081600  # 2018-08-01 00:00 UTC
    rows = []
    for user in range(n_ids):
        gender = str(rng.choice(["MALE", "FEMALE"]))
        age = int(rng.integers(18, 70))
        for day in range(days):
            pings = int(rng.poisson(5 + (age - 18) / 4 + (3 if gender == "MALE" else 0))) + 2
            first = start + day * 86400 + 10 * 3600 + int(rng.integers(0, 3600))
            stamps = first + np.cumsum(rng.integers(20, 150, pings))
            rows.extend((user, gender, age, int(t)) for t in stamps)
    df = pd.DataFrame(rows, columns=["id", "gender", "age", "timestamp"])
    df.insert(0, "Unnamed: 0", range(len(df)))
    df["number_of_kids"] = rng.integers(0, 3, len(df))
    return df


def user_engagement_forecast_using_dp(df, seed: int = 12345): #-> tuple[float, float]:

    # include the necessary imports in the main body of the function
    # to prepare for what PySyft would expect in the submitted code.

    from datetime import datetime
    import pandas as pd

    from sklearn.model_selection import train_test_split
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.metrics import mean_squared_error
    from sklearn.preprocessing import MinMaxScaler

    from skops.io import dumps, loads #get_untrusted_types, dump, load

    import numpy as np

    import opendp.prelude as dp
    from opendp.transformations import make_count
    # from opendp.measurements import make_geometric
    from opendp.measurements import make_gaussian

    ## This function contains some details for the data to fit properly to the ML model.
    ## Feel free to skip this function.
    def data_preprocessing(df):
        """
        helper fuction for preprocessing the data to extract required features for better model accuracy
        """

        # Data preprocessing
        df.dropna(how='any', inplace=True)
        df['gender'] = df['gender'].replace({'MALE':1, 'FEMALE':0})
        df['timestamp_decode'] = df['timestamp'].apply(lambda x: datetime.fromtimestamp(x))

        # Feature engineering
        df['date'] = pd.to_datetime(df['timestamp_decode'].dt.date)

        df['online_hours'] = (df.groupby(by=['id','date'])['timestamp'].diff())/(60*60)
        df['online_hours']  =  df['online_hours'].apply(lambda x: x if x< (2/60) else (2/60))

        tmp_df = (df.groupby(by = ['id','date'])['online_hours'].sum()).reset_index()
        tmp_df['online_hours'] = round(tmp_df['online_hours'], 1) #runding off hours

        df = pd.merge(df[['id', 'date', 'gender', 'age']], tmp_df, on=['id', 'date'], how = 'inner')
        df.drop_duplicates(inplace=True)

        df['day_name'] = df['date'].dt.day_name()
        df['day'] = df['date'].dt.day
        df['month'] = df['date'].dt.month
        df['month_name'] = df['date'].dt.month_name()
        df['year'] = df['date'].dt.year
        df['dayofweek'] = df['date'].dt.dayofweek
        df['week']= df['date'].dt.isocalendar().week

        week_names = {'Sunday':0,'Monday':'1','Tuesday':2,'Wednesday':3, 'Thursday':4,'Friday':5,'Saturday':6}
        month_names = {'January':0, 'February':1,'March':2,'April':3,'May':4,'June':5,'July':6,
                        'August':7, 'September':8,'October':9,'November':10,'December':11}

        df['day_name'] = df['day_name'].map(week_names)
        df['month_name'] = df['month_name'].map(month_names)

        print("Final training data size:", df.shape)

        display(df.head())

        return df


    def dp_in_input_privacy(df, column="age"):

        # Parameters for DP noise
        epsilon = 0.9  # Privacy budget, smaller means more noise
        sensitivity = 1.0  # Sensitivity of the 'age' column, assuming change by 1 unit

        # Differential privacy
        dp.enable_features("contrib")
        input_space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)

        # Adding laplace noise using OpenDP
        laplace_noise = dp.m.make_laplace(*input_space, scale=sensitivity/epsilon)
        df[column] = df[column].astype(float)
        df['age_noisy'] = df[column].apply(lambda x: laplace_noise(x))

        return df


    def dp_in_output_privacy(y_pred):

        # Parameters for DP noise
        epsilon = 0.9  # Privacy budget, smaller means more noise
        sensitivity = 1.0  # Sensitivity of the 'age' column, assuming change by 1 unit

        # Differential privacy
        dp.enable_features("contrib")
        input_space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)

        # Adding laplace noise using OpenDP
        laplace_noise = dp.m.make_laplace(*input_space, scale=sensitivity/epsilon)
        y_pred_noisy = pd.Series(y_pred).apply(lambda x: laplace_noise(x))

        return y_pred_noisy


    # Apply preprocessing steps to df
    df = data_preprocessing(df)

    # Apply the noise to 'age'
    df = dp_in_input_privacy(df)

    # Train-test split
    X = df.drop(['id', 'date', 'online_hours', 'age'], axis=1)
    y = df['online_hours']

    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)

    scaler = MinMaxScaler()
    X_train = scaler.fit_transform(X_train)
    X_test  = scaler.transform(X_test)

    # Regressor model
    model = RandomForestRegressor(n_estimators=100, random_state=42)

    # Training the model
    model.fit(X_train, y_train)

    # Convert model into a serialized format using skops [https://skops.readthedocs.io/en/stable/persistence.html]
    # This step is necessary to make the output type compatible with PySyft.
    serialized_model = dumps(model)
    loaded = loads(serialized_model, trusted=type(model))

    print("Original model datatype:", type(loaded))
    print("Returned model datatype:", type(serialized_model))

    # Evaluation
    y_pred = model.predict(X_test)
    y_pred_noisy = dp_in_output_privacy(y_pred)

    mse = mean_squared_error(y_test, y_pred)
    rmse = np.sqrt(mse)

    print(f'Mean Squared Error: {mse}')
    print(f'Root Mean Squared Error: {rmse}')

    return serialized_model, mse, rmse, y_pred_noisy


@pytest.fixture
def orchestra_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DATASITE_ORCHESTRA_HOME", str(tmp_path))
    # The tutorial samples its real and mock ids with NumPy's global generator, unseeded.
    # On about one mock in 25, changing the mock's first row shifts the rows of the
    # tutorial's grouped frame; the checker compares row-wise releases by position, so
    # it then measures epsilon in the thousands and the submission is refused (over the
    # cap of 100). That checker limit is reported on issue 3; seeding keeps the tutorial
    # on a mock where the measurement is the one the tutorial's code states (1.8).
    state = np.random.get_state()
    np.random.seed(0)
    yield tmp_path
    np.random.set_state(state)


def test_the_pysyft_dp_tutorial_runs_unchanged(orchestra_home: Path) -> None:
    # Step 1.A: prepare the data (the CSV is generated instead of downloaded).
    df = pings_csv()
    df.head()
    df = df.drop(columns=['Unnamed: 0', 'number_of_kids'])

    ids = df['id'].drop_duplicates().sample(n=900)
    print("No. of randomly selected ids for real data:", len(ids))

    real_df = df[df['id'].isin(ids)]
    tmp_df = df[~df['id'].isin(ids)]
    ids = tmp_df['id'].drop_duplicates().sample(n=100)
    print("No. of randomly selected ids for mock data:", len(ids))

    mock_df = tmp_df[tmp_df['id'].isin(ids)]

    print("Real data size:", real_df.shape)
    print("Mock data size:", mock_df.shape)
    uploaded_mock = mock_df.copy()

    # Step 1.B: launch a development site and upload.
    data_site = sy.orchestra.launch(name="user_engagement_data_center", reset=True)
    try:
        assert data_site.data_dir == orchestra_home / "user_engagement_data_center"
        with pytest.warns(sy.DevPasswordWarning, match="changethis"):
            owner_client = data_site.login(email="info@openmined.org", password="changethis")
        assert isinstance(owner_client, sy.OwnerClient)
        assert "Datasite" in owner_client._repr_html_()

        pings_asset = sy.Asset(
            name="User pings data.",
            data = real_df, # real data
            mock = mock_df  # mock data
        )
        pings_asset.data.head(n=3)
        pings_asset.mock.head(n=3)

        description = """
About this data:

1. id: Unique customer id whose ping has been received.
2. gender: Gender of the customer
3. age: Customer's age
4. timestamp: The Unix epoch timestamp when ping was received by the
system.

"""
        citation = "Kaggle: https://www.kaggle.com/code/tanishqjazz/user-engagement-prediction-screentime-forecasting"
        summary = "The user engagement dataset contains user id, gender, age and the timestamp they made pings. The dataset can be used for screen time forecasting."

        pings_dataset = sy.Dataset(
            name="User Engagement Dataset",
            description=description,
            summary=summary,
            citation=citation
        )
        pings_dataset.add_asset(pings_asset)
        assert "User pings data." in pings_dataset._repr_html_()
        owner_client.upload_dataset(dataset=pings_dataset)
        assert [d.name for d in owner_client.datasets] == ["User Engagement Dataset"]

        # Step 2: an account for the external researcher.
        ds_account_info = owner_client.users.create(
            email="bobivans@datascience.inst",
            name="Dr. Bob Ivans",
            password="syftrocks",
            password_verify="syftrocks",
            institution="Data Science Institute",
            website="https://datascience_institute.research.data"
        )
        print(f"New User: {ds_account_info.name} ({ds_account_info.email}) registered as {ds_account_info.role}")
        assert (ds_account_info.email, ds_account_info.role) == ("bobivans@datascience.inst", "researcher")

        # Step 3: the researcher connects and browses.
        with warnings.catch_warnings():
            warnings.simplefilter("error", sy.DevPasswordWarning)  # no warning for bob
            ds_client = data_site.login(email="bobivans@datascience.inst", password="syftrocks")
        assert isinstance(ds_client, sy.ResearcherClient)
        assert "User Engagement Dataset" in ds_client.datasets._repr_html_()

        user_eng_dataset = ds_client.datasets["User Engagement Dataset"]
        assert summary in user_eng_dataset._repr_html_()
        assert ds_client.datasets[0].name == user_eng_dataset.name

        assets = user_eng_dataset.assets[0]
        assert "Mock preview" in assets._repr_html_()
        pd.testing.assert_frame_equal(
            assets.mock.reset_index(drop=True), uploaded_mock.reset_index(drop=True)
        )
        with pytest.raises(PermissionError, match="never leaves"):
            _ = assets.data

        # Step 4.B: test on the mock locally, then wrap and submit.
        serialized_model, mse, rmse, y_pred_noisy = user_engagement_forecast_using_dp(mock_df)
        remote_user_code = sy.syft_function_single_use(df=assets)(user_engagement_forecast_using_dp)
        assert remote_user_code.code.startswith("def user_engagement_forecast_using_dp(df, seed: int = 12345):")

        description = """The purpose of this study will be to run a machine learning experimental pipeline on user pings engagement data. As first attempt, the pipelines includes a normalisation steps for features and labels using a MinMaxScaler. Then it adds differential privacy noise on the 'age' column and finally on the model predictions. The selected ML model is RandomForest regression, with the intent to gather the mean squared error scores on both training, and testing  data partitions, randomly generated.
"""
        research_project = ds_client.create_project(
            name="User Engagement Forecasting ML Project",
            description=description,
            user_email_address="bobivans@datascience.inst"
        )
        code_request = research_project.create_code_request(remote_user_code, ds_client)
        assert "user_engagement_forecast_using_dp" in code_request._repr_html_()
        assert code_request.epsilon > 0  # measured on the mock: the tutorial declares none

        # Not approved yet: the site refuses to run it.
        with pytest.raises(sy.ApprovalPendingError, match="waiting for approval"):
            ds_client.code.user_engagement_forecast_using_dp(df=assets)

        # Step 5: the owner reviews and approves.
        request = owner_client.requests[0]
        assert request.code == remote_user_code.code
        assert "user_engagement_forecast_using_dp" in owner_client.requests._repr_html_()
        report = request.wait_checked().policy_report
        assert report is not None
        print(report.to_markdown())
        if report.verdict == "blocked":
            with pytest.raises(sy.DatasiteError, match="justification"):
                request.approve()
            request.approve(justification="Tutorial study: noise on age and on predictions reviewed; the model is released for this engagement forecast only.")
        else:
            request.approve()

        # Step 6: the researcher gets the result.
        assert "user_engagement_forecast_using_dp" in ds_client.requests._repr_html_()
        user_engage_dataset = ds_client.datasets["User Engagement Dataset"]
        df = user_engage_dataset.assets[0]

        result = ds_client.code.user_engagement_forecast_using_dp(df=df)

        print("mse:", result[1])
        print("rmse:", result[2])
        assert float(result[2]) == pytest.approx(math.sqrt(float(result[1])))

        from skops.io import dump, loads

        syft_model = result[0]
        model_bytes = syft_model.syft_action_data

        loaded_model = loads(model_bytes, trusted='sklearn.ensemble._forest.RandomForestRegressor')

        new_data = pd.DataFrame({
            'gender': [1],
            'age': [45],
            'day_name': [3],
            'day': [2],
            'month': [8],
            'month_name': [5],
            'year': [2018],
            'dayofweek': [6],
            'week': [23]
        })

        predicted_hour = loaded_model.predict(new_data)
        print(f'Predicted screentime hour: {predicted_hour[0]}')
        assert np.isfinite(predicted_hour).all()

        preds = result[3].syft_action_data
        # One noisy prediction per test row of the *real* table (20% of its user-days),
        # not of the mock: the code ran next to the private data.
        real_user_days = real_df.groupby(["id", real_df["timestamp"] // 86400]).ngroups
        assert np.asarray(preds).size == math.ceil(0.2 * real_user_days)
        assert np.isfinite(np.asarray(preds, dtype=float)).all()
    finally:
        data_site.land()
