"""Running trio on io_uring: ``run``/``install``/``start_guest_run`` (``_install``),
``python -m trio_uring run`` (``_launcher``) and its children (``../_site``),
``python -m trio_uring info`` (``_info``) and ``docs`` (``_docs``), and the pytest plugin
(``_pytest_plugin``, entry point ``trio_uring``: ``pytest --trio-uring``).

Nothing here is on a hot path; :mod:`trio_uring` re-exports the public names.
"""
