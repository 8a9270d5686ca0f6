"""Imports every table so that ``SQLModel.metadata`` is complete (migrations, schema comparison)."""

from sqlmodel import SQLModel

from jingtan_api.accounts import models as _accounts  # noqa: F401
from jingtan_api.actions import models as _actions  # noqa: F401
from jingtan_api.audit import models as _audit  # noqa: F401
from jingtan_api.auth import models as _auth  # noqa: F401
from jingtan_api.campaigns import models as _campaigns  # noqa: F401
from jingtan_api.challenges import models as _challenges  # noqa: F401
from jingtan_api.households import models as _households  # noqa: F401
from jingtan_api.identity import models as _identity  # noqa: F401
from jingtan_api.impact import models as _impact  # noqa: F401
from jingtan_api import job_models as _jobs  # noqa: F401
from jingtan_api.media import models as _media  # noqa: F401
from jingtan_api.merchants import models as _merchants  # noqa: F401
from jingtan_api.methodologies import models as _methodologies  # noqa: F401
from jingtan_api.notifications import models as _notifications  # noqa: F401
from jingtan_api.offers import models as _offers  # noqa: F401
from jingtan_api.organisations import models as _organisations  # noqa: F401
from jingtan_api.redemptions import models as _redemptions  # noqa: F401
from jingtan_api.retirements import models as _retirements  # noqa: F401
from jingtan_api.users import models as _users  # noqa: F401
from jingtan_api.volunteers import models as _volunteers  # noqa: F401
from jingtan_api.webhooks import models as _webhooks  # noqa: F401

metadata = SQLModel.metadata
