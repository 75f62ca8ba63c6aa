"""The workbook's own JupyterLab: `make lab` and tests/test_browser.py put this folder on JUPYTER_CONFIG_PATH.

Quiet and project-local: nothing here is written to the user's home. These server settings win over the
user's own (~/.jupyter: this folder comes first on the path); options on the command line win over both.
The JupyterLab defaults are in labconfig/default_setting_overrides.json (the user's JupyterLab settings win).
"""

from seglib.kernels import kernel_manager_settings

c = get_config()  # noqa: F821 (Jupyter's config loader defines it)

c.ServerApp.allow_root = True  # containers and hosted notebooks (Docker, Colab) run as root
c.LabApp.news_url = None  # no news feed fetched ...
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"  # ... and no update check
for name, value in kernel_manager_settings().items():  # no "running over TCP without encryption"
    setattr(c.KernelManager, name, value)
