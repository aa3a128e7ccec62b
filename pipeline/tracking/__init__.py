"""The tracking stage, a plain MLflow adapter: the run protocol (``schema``), the store a command
opens once (``store``), runs opened and closed (``runs``), written (``record``) and found
(``search``), logged runs and models read back (``logged``, ``models``), the registry."""
