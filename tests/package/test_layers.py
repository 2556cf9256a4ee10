"""The layers of the package (DESIGN.md: "a module may import from the stages above it, never from below"):
no module imports a module of a higher layer, at module level or inside a function.

The import graph is the one ``test_import_graph`` reads with ``ast`` (nothing is imported).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from .test_import_graph import _graph

#: Layers from the bottom up; a module belongs to the first entry that is its name or a package above it.
#: A module may import modules of its own layer and of the layers below it.
LAYERS: List[Tuple[str, ...]] = [
    # base: no petastorm imports but errors/settings
    ("petastorm.errors", "petastorm.settings", "petastorm.spark_types", "petastorm.npy_format",
     "petastorm.batch_memory", "petastorm.cli_support", "petastorm.main_module"),
    # the schema model and the user-facing specs (no I/O)
    ("petastorm.unischema", "petastorm.codecs", "petastorm.codec_checks", "petastorm.arrow_types", "petastorm.image_io",
     "petastorm.value_types", "petastorm.transform", "petastorm.predicates", "petastorm.selectors",
     "petastorm.ngram"),
    # URL -> filesystem
    ("petastorm.fs_utils", "petastorm.fs_impl"),
    # metadata, the writers, the ETL command line
    ("petastorm.etl",),
    # the read pipeline's stages and the caches they use
    ("petastorm.reader_impl", "petastorm.cache", "petastorm.local_disk_cache"),
    # the reader facade, the original's pool paths, the package's lazy exports, readers built on readers
    ("petastorm.reader", "petastorm.workers_pool", "petastorm", "petastorm.weighted_sampling_reader",
     "petastorm.test_util"),
    # framework-agnostic batching under every loader
    ("petastorm.adapters",),
    # framework adapters
    ("petastorm.pytorch", "petastorm.pytorch_impl", "petastorm.tf_utils", "petastorm.tf_impl",
     "petastorm.jax", "petastorm.jax_impl"),
    # Spark: the converter builds torch/tf loaders
    ("petastorm.spark", "petastorm.spark_utils"),
    # command-line tools
    ("petastorm.tools", "petastorm.benchmark"),
]

#: Imports from a higher layer that are still there, each with why (remove an entry once it is fixed). An entry
#: ``(importer, imported)`` covers the imported module and the modules below it.
KNOWN_INVERSIONS: Dict[Tuple[str, str], str] = {
    ("petastorm.reader_impl.pytorch_shuffling_buffer", "petastorm.pytorch_impl.batched_buffers"):
        "the original's public module path (petastorm.reader_impl.pytorch_shuffling_buffer) of the torch "
        "loaders' batched buffers: a facade (imports only), the implementation is in pytorch_impl",
    ("petastorm.reader_impl.explain", "petastorm.adapters.buffer_quality"):
        "reader.explain(shuffling_queue_capacity=...) (petastorm-explain --buffer uses it): the reader's "
        "shortcut to the loaders' buffer simulation, which runs the loaders' own code (adapters); the loaders "
        "pass it in (explain_reader(buffer_order=...)). To fix: petastorm-explain builds the buffer itself and "
        "Reader.explain drops the buffer arguments (an API change)",
}


def _layer(module: str) -> int:
    best, best_len = None, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = index, len(name)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def _inversions() -> Dict[Tuple[str, str], Tuple[int, int]]:
    out = {}
    for module, targets in _graph(module_level_only=False).items():
        for target in targets:
            if _layer(target) > _layer(module):
                out[(module, target)] = (_layer(module), _layer(target))
    return out


def test_every_module_has_a_layer():
    for module in _graph(module_level_only=True):
        _layer(module)


def _known(edge: Tuple[str, str]) -> Tuple[str, str] | None:
    importer, imported = edge
    for known_importer, known_imported in KNOWN_INVERSIONS:
        if importer == known_importer and (imported == known_imported
                                           or imported.startswith(known_imported + ".")):
            return known_importer, known_imported
    return None


def test_no_module_imports_from_a_higher_layer():
    new = {edge: layers for edge, layers in _inversions().items() if _known(edge) is None}
    assert new == {}, f"imports from a higher layer ((importer, imported): (its layer, imported layer)): {new}"


def test_the_known_inversions_are_still_there():
    # an entry that no longer holds must be removed, so that the list stays the list of work left
    assert set(KNOWN_INVERSIONS) <= {_known(edge) for edge in _inversions()}


def test_etl_and_lower_layers_never_import_the_tools():
    offenders = sorted(module for module, targets in _graph(module_level_only=False).items()
                       if any(t.startswith(("petastorm.tools", "petastorm.benchmark")) for t in targets)
                       and _layer(module) < _layer("petastorm.tools"))
    assert offenders == []
