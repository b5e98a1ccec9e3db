# Started by the test suite (tests/conftest.py puts this folder on PYTHONPATH): the unpickling
# guard in every Python process the tests start; see pickle_guard.py.
import os

if os.environ.get("SURROGATESHAP_PICKLE_GUARD") == "1":
    import pickle_guard

    pickle_guard.install()
