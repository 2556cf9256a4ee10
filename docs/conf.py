"""Sphinx configuration of the docs site: ``make docs`` builds it into ``build/docs`` (warnings are errors).

The pages are the Markdown files of ``docs/`` (read by myst-parser), the README as the home page, and an API
reference that autodoc generates from the numpy-style docstrings of the public modules (napoleon). The
benchmark chart that ``make bench`` wrote last is copied in by the local extension ``_ext/bench_chart.py``.
"""
import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(DOCS)
sys.path.insert(0, REPO)  # the petastorm of this tree, whichever interpreter runs the build
sys.path.insert(0, os.path.join(DOCS, "_ext"))

import petastorm  # noqa: E402

project = "petastorm"
author = "petastorm contributors"
release = version = petastorm.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "bench_chart"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext"]
myst_enable_extensions = ["deflist"]
myst_heading_anchors = 3

# numpy-style docstrings; `name` in a docstring is a cross-reference when the name is documented here
napoleon_google_docstring = False
napoleon_numpy_docstring = True
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
toc_object_entries_show_parents = "hide"  # the sidebar lists `Reader.stop()` as `stop()`
autodoc_default_options = {"members": None, "show-inheritance": None}

html_theme = "alabaster"
html_title = f"petastorm {release}"
html_theme_options = {"description": "Parquet datasets to PyTorch, TensorFlow and JAX", "fixed_sidebar": True,
                      "page_width": "1240px", "sidebar_width": "260px"}
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
html_static_path = ["_static"]
html_css_files = ["petastorm.css"]
