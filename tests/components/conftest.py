from tests.dags.conftest import report_server  # noqa: F401 - a folder served over http
from tests.hooks.conftest import hook  # noqa: F401 - the same hook fixture
