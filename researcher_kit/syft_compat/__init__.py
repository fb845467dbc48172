"""The PySyft 0.9 client surface over the datasite: ``from researcher_kit import syft_compat
as sy`` runs OpenMined's PySyft + OpenDP tutorial unchanged.

>>> from researcher_kit import syft_compat as sy
>>> site = sy.orchestra.launch(name="user_engagement_data_center", reset=True)  # doctest: +SKIP
>>> owner = site.login(email="info@openmined.org", password="changethis")  # doctest: +SKIP
>>> dataset = sy.Dataset(name="User Engagement Dataset")  # doctest: +SKIP
>>> dataset.add_asset(sy.Asset(name="pings", data=real_df, mock=mock_df))  # doctest: +SKIP
>>> owner.upload_dataset(dataset=dataset)  # doctest: +SKIP
>>> ds = site.login(email="bob@uni.example", password="...")  # doctest: +SKIP
>>> asset = ds.datasets["User Engagement Dataset"].assets[0]  # doctest: +SKIP
>>> fn = sy.syft_function_single_use(df=asset, epsilon=1.0)(my_analysis)  # doctest: +SKIP
>>> ds.create_project(name="Study").create_code_request(fn, ds)  # doctest: +SKIP
>>> owner.requests[0].approve()  # doctest: +SKIP
>>> ds.code.my_analysis(df=asset).syft_action_data  # doctest: +SKIP

Differences from PySyft, by design: a request declares its privacy loss (``epsilon=``,
measured on the mock when left out), a policy checker reviews it before anyone may
approve, approval waits for that check, and results come back only as DP-safe formats
(JSON, Parquet, skops), never pickle.
"""

import warnings

from datasite.client.http import DatasiteError, DevPasswordWarning
from datasite.contract.results import trust_reviewed_types_in_skops
from researcher_kit.syft_compat import orchestra
from researcher_kit.syft_compat.builders import Asset, Dataset
from researcher_kit.syft_compat.clients import OwnerClient, ResearcherClient, login
from researcher_kit.syft_compat.code import ApprovalPendingError
from researcher_kit.syft_compat.functions import (
    ExactMatch,
    OutputPolicyExecuteCount,
    SingleExecutionExactOutput,
    SyftFunction,
    syft_function,
    syft_function_single_use,
)
from researcher_kit.syft_compat.results import ActionObject

# Loud, as PySyft is: every login with the development password warns, not just the first.
warnings.filterwarnings("always", category=DevPasswordWarning)
# The tutorial's own skops.io.loads(..., trusted=type(model)) of its forest loads as it
# did with the skops PySyft used: the reviewed allowlist (sklearn.tree._tree.Tree) is
# trusted, and one type or name may stand for the list.
trust_reviewed_types_in_skops()

__all__ = [
    "ActionObject",
    "ApprovalPendingError",
    "Asset",
    "Dataset",
    "DatasiteError",
    "DevPasswordWarning",
    "ExactMatch",
    "OutputPolicyExecuteCount",
    "OwnerClient",
    "ResearcherClient",
    "SingleExecutionExactOutput",
    "SyftFunction",
    "login",
    "orchestra",
    "syft_function",
    "syft_function_single_use",
]
