"""Internals of :mod:`petastorm.fs_utils` (import that module, not this package).

- :mod:`~petastorm.fs_impl.urls` - check and normalise dataset URLs; the path and HDFS namenode they give.
- :mod:`~petastorm.fs_impl.s3_options` - s3fs-style ``storage_options`` -> ``pyarrow.fs.S3FileSystem``
  arguments.
- :mod:`~petastorm.fs_impl.factories` - ``FilesystemFactory``: picklable recipes that build a filesystem
  (local, S3, s3fs, HDFS, fsspec, given) when it is first needed.
"""
