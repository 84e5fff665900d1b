"""MLflow, kept out of the library core: runs and their metrics (``runs``), the logged pyfunc model
(``serving``) and the UI's headline runs view (``runs_view``). Only the verbs import it, and only
when a tracking store is in use, so a fit runs without MLflow installed."""
