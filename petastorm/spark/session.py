"""What the converter needs to know about a Spark session, through public APIs Spark Connect serves too.

The only classic-only call of :mod:`petastorm.spark` lives here, in :func:`_classic_only_application_id`
(``SparkContext.applicationId``: the fallback when ``spark.conf`` does not hold ``spark.app.id``).
"""
from __future__ import annotations

from typing import Any, Optional

from petastorm.errors import PetastormArgumentError

__all__ = ["active_session", "application_id", "session_of"]


def _classic_only_application_id(spark: Any) -> Optional[str]:
    """``spark.sparkContext.applicationId`` on a classic session; None where there is no SparkContext
    (Spark Connect)."""
    try:
        return spark.sparkContext.applicationId
    except Exception:  # noqa: BLE001 - Connect sessions have no sparkContext
        return None


def application_id(spark: Any) -> str:
    """The Spark application id (part of the cache directory names), e.g. ``local-1796640906074``.

    ``spark.conf.get('spark.app.id')`` (public, served by Spark Connect) first, the SparkContext's id
    otherwise; ``unknown`` when neither is known.
    """
    try:
        app_id = spark.conf.get("spark.app.id", None)
    except Exception:  # noqa: BLE001 - a conf the server refuses to show
        app_id = None
    return app_id or _classic_only_application_id(spark) or "unknown"


def session_of(df: Any) -> Any:
    """The ``SparkSession`` of a DataFrame (``DataFrame.sparkSession``, public since pyspark 3.3)."""
    return df.sparkSession


def active_session() -> Any:
    """The active ``SparkSession`` of this thread (for a converter made from a path).

    Raises
    ------
    PetastormArgumentError
        When there is none: the message says to create one first.
    """
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None:
        raise PetastormArgumentError("make_spark_converter(path) needs an active SparkSession: create one with "
                                     "SparkSession.builder...getOrCreate() first, or pass a DataFrame")
    return spark
