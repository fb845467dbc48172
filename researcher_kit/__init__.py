"""The researcher's notebook client and DP toolkit.

>>> import researcher_kit as rk
>>> site = rk.login("http://127.0.0.1:8080", "bob@uni.example", "pw")  # doctest: +SKIP
>>> pings = site.datasets["Pings"].assets["pings"]  # doctest: +SKIP
>>> @rk.dp_request(asset=pings, epsilon=1.0)  # doctest: +SKIP
... def mean_age(df):
...     return rk.dp.mean(df["age"], bounds=(18, 90), epsilon=1.0)
>>> req = site.submit(mean_age, project="Engagement study")  # doctest: +SKIP
>>> req.result()  # doctest: +SKIP
"""

from datasite.client.http import DatasiteError
from researcher_kit import dp, federated
from researcher_kit.client import Request, Site, login
from researcher_kit.request import DPRequest, dp_request

__all__ = [
    "DPRequest", "DatasiteError", "Request", "Site", "dp", "dp_request", "federated", "login",
]  # fmt: skip
