"""Ship the top-level ``templates/`` folder inside the package (as ``mailticketd/templates``).

Everything else about the build is in pyproject.toml.  The templates stay
where translators and site admins find them, at the top of the checkout;
a built wheel carries a copy so that ``pip install .`` gives a daemon that
starts.  An editable install reads the checkout's folder directly.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TEMPLATES = Path(__file__).resolve().parent / "templates"


class BuildWithTemplates(build_py):
    """build_py that also copies templates/ into the built package."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            self.copy_tree(str(TEMPLATES), str(Path(self.build_lib) / "mailticketd" / "templates"))


setup(cmdclass={"build_py": BuildWithTemplates})
