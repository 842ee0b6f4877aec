"""The first-party training recipes: each ``<name>.yaml`` here is the recipe ``<name>`` (``lightning-gan recipes``).

This folder sits at the top of the repository and is installed as the package ``lightning_gan.recipes``
(see setup.py), so a built wheel ships every recipe. A recipe names the plugins it needs through its class
paths and registry names; ``lightning-gan recipes`` lists each with the distribution it needs.
"""
