"""Build hook of lightning-gan: install the top-level ``recipes/`` folder as the package ``lightning_gan.recipes``.

Everything else is configured in pyproject.toml. The first-party recipes live at the top of the repository,
where a user browses them, and every wheel ships them as package data of ``lightning_gan.recipes``.
setuptools' package discovery cannot map a folder outside the package tree onto a subpackage, so the
package list is computed here: every ``lightning_gan*`` package, plus that one.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["lightning_gan*"]), "lightning_gan.recipes"],
    package_dir={"lightning_gan.recipes": "recipes"},
)
