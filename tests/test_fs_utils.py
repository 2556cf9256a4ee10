"""URL -> (pyarrow filesystem, path) resolution for every scheme, without a network (S3 is in test_fs_utils_s3.py)."""
import pickle
import sys
import warnings
from urllib.parse import urlparse

import fsspec
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from petastorm.errors import PetastormArgumentError, PetastormFilesystemError
from petastorm.fs_utils import (
    FilesystemResolver,
    get_dataset_path,
    get_filesystem_and_path_or_paths,
    normalize_dir_url,
)

TABLE = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})


# -- normalize_dir_url / get_dataset_path ------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("/a/b/", "/a/b"),
    ("/a/b", "/a/b"),
    ("s3://bucket/path/", "s3://bucket/path"),
    ("s3://bucket/", "s3://bucket"),
    ("file:///tmp/x//", "file:///tmp/x"),
    ("/", "/"),
    ("file:///", "file:///"),
])
def test_normalize_dir_url_strips_trailing_slashes_only(url, expected):
    assert normalize_dir_url(url) == expected


def test_normalize_dir_url_accepts_a_pathlib_path(tmp_path):
    assert normalize_dir_url(tmp_path / "ds") == str(tmp_path / "ds")


@pytest.mark.parametrize("bad", [None, 1, b"/a", ["/a"]])
def test_normalize_dir_url_refuses_non_strings_with_the_original_wording(bad):
    with pytest.raises(ValueError, match="directory url must be a string"):
        normalize_dir_url(bad)


def test_normalize_dir_url_refuses_an_empty_string():
    with pytest.raises(ValueError, match="empty"):
        normalize_dir_url("")


@pytest.mark.parametrize("url, path", [
    ("hdfs://nn:8020/a/b", "/a/b"),
    ("file:///a/b", "/a/b"),
    ("/a/b", "/a/b"),
    ("s3://bucket/a/b", "bucket/a/b"),
    ("s3a://bucket/a", "bucket/a"),
    ("gs://bucket/a/b", "bucket/a/b"),
    ("abfs://container/a", "container/a"),
])
def test_get_dataset_path_keeps_buckets_and_drops_hosts(url, path):
    assert get_dataset_path(urlparse(url)) == path


# -- local files -------------------------------------------------------------------------------------

@pytest.mark.parametrize("as_url", [False, True], ids=["plain-path", "file-url"])
def test_local_paths_resolve_to_pyarrow_local_filesystem_and_read_back(tmp_path, as_url):
    pq.write_table(TABLE, str(tmp_path / "part-0.parquet"))
    url = f"file://{tmp_path}/" if as_url else f"{tmp_path}/"
    resolver = FilesystemResolver(url)
    assert isinstance(resolver.filesystem(), pafs.LocalFileSystem)
    assert resolver.get_dataset_path() == str(tmp_path)
    assert resolver.parsed_dataset_url().scheme == ("file" if as_url else "")
    assert pq.read_table(resolver.get_dataset_path(), filesystem=resolver.filesystem()).equals(TABLE)


def test_relative_local_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ds").mkdir()
    pq.write_table(TABLE, str(tmp_path / "ds" / "f.parquet"))
    fs, path = get_filesystem_and_path_or_paths("ds")
    assert path == str(tmp_path / "ds")
    assert pq.read_table(path, filesystem=fs).num_rows == 3


def test_file_url_with_a_host_is_refused_with_the_fix():
    with pytest.raises(PetastormFilesystemError, match=r"file:///data/x"):
        FilesystemResolver("file://data/x")


def test_missing_local_path_is_not_checked_here(tmp_path):
    fs, path = get_filesystem_and_path_or_paths(str(tmp_path / "does-not-exist"))
    assert path == str(tmp_path / "does-not-exist")
    assert fs.get_file_info(path).type == pafs.FileType.NotFound


# -- S3 resolution (no server needed: pyarrow's S3FileSystem connects lazily) ------------------------

@pytest.mark.parametrize("scheme", ["s3", "s3a", "s3n"])
def test_s3_schemes_resolve_to_pyarrow_s3_with_bucket_in_path(scheme):
    resolver = FilesystemResolver(f"{scheme}://my-bucket/data/set/", storage_options={
        "key": "k", "secret": "s", "client_kwargs": {"endpoint_url": "http://127.0.0.1:1",
                                                     "region_name": "eu-west-3"}})
    assert resolver.get_dataset_path() == "my-bucket/data/set"
    fs = resolver.filesystem()
    assert isinstance(fs, pafs.S3FileSystem)
    assert fs.region == "eu-west-3"


def test_s3_options_are_translated_from_s3fs_style_keys():
    options = {"key": "AK", "secret": "SK", "token": "T", "endpoint_url": "http://localhost:9000",
               "region": "ap-south-1"}
    factory = FilesystemResolver("s3://b/p", storage_options=options).filesystem_factory()
    assert factory.kind == "s3"
    assert factory.options["access_key"] == "AK"
    assert factory.options["secret_key"] == "SK"
    assert factory.options["session_token"] == "T"
    assert factory.options["endpoint_override"] == "localhost:9000"
    assert factory.options["scheme"] == "http"
    assert factory.options["region"] == "ap-south-1"
    fs = factory()
    assert isinstance(fs, pafs.S3FileSystem) and fs.region == "ap-south-1"


def test_s3_anonymous_access_maps_to_pyarrow_anonymous():
    factory = FilesystemResolver("s3://b/p", storage_options={"anon": True, "region": "us-east-1"}) \
        .filesystem_factory()
    assert factory.options["anonymous"] is True
    assert isinstance(factory(), pafs.S3FileSystem)


def test_s3fs_only_options_switch_to_s3fs_wrapped_in_pyfilesystem():
    resolver = FilesystemResolver("s3://b/p", storage_options={
        "key": "k", "secret": "s", "requester_pays": True,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:1", "region_name": "us-east-1"}})
    fs = resolver.filesystem()
    assert isinstance(fs, pafs.PyFileSystem)
    assert type(fs.handler.fs).__name__ == "S3FileSystem" and type(fs.handler.fs).__module__.startswith("s3fs")
    assert resolver.get_dataset_path() == "b/p"


# -- HDFS: resolution without a Hadoop install ---------------------------------------------------------

def test_hdfs_url_gives_namenode_host_port_and_path_without_connecting():
    resolver = FilesystemResolver("hdfs://namenode.example:9000/user/me/ds/")
    factory = resolver.filesystem_factory()
    assert (factory.kind, factory.options["host"], factory.options["port"]) == ("hdfs", "namenode.example", 9000)
    assert resolver.get_dataset_path() == "/user/me/ds"
    assert pickle.loads(pickle.dumps(factory)).options["host"] == "namenode.example"


def test_hdfs_url_without_port_lets_libhdfs_choose_it():
    factory = FilesystemResolver("hdfs://nameservice1/ds").filesystem_factory()
    assert (factory.options["host"], factory.options["port"]) == ("nameservice1", 0)


def test_hdfs_url_without_namenode_uses_default_or_the_hadoop_configuration():
    resolver = FilesystemResolver("hdfs:///user/me/ds", user="me")
    factory = resolver.filesystem_factory()
    assert (factory.options["host"], factory.options["port"], factory.options["user"]) == ("default", 0, "me")
    assert resolver.get_dataset_path() == "/user/me/ds"
    configured = FilesystemResolver("hdfs:///user/me/ds",
                                    hadoop_configuration={"fs.defaultFS": "hdfs://nn2.example:8021"})
    assert (configured.filesystem_factory().options["host"],
            configured.filesystem_factory().options["port"]) == ("nn2.example", 8021)


def test_missing_libhdfs_gives_an_error_that_says_what_to_install(tmp_path, monkeypatch):
    empty = str(tmp_path)
    for var in ("ARROW_LIBHDFS_DIR", "HADOOP_HOME", "JAVA_HOME"):
        monkeypatch.setenv(var, empty)
    resolver = FilesystemResolver("hdfs://namenode.example:8020/ds")  # resolving alone never loads libhdfs
    with pytest.raises(PetastormFilesystemError) as info:
        resolver.filesystem()
    message = str(info.value)
    assert "hdfs://namenode.example:8020/ds" in message
    assert "HADOOP_HOME" in message and "JAVA_HOME" in message and "CLASSPATH" in message
    assert "Unable to load" in message
    assert isinstance(info.value, ValueError)


class _LocalConnector:
    """A legacy ``connector``: anything with ``hdfs_connect_namenode(url, driver, user=None)``."""

    calls = []

    @classmethod
    def hdfs_connect_namenode(cls, url, driver, user=None):
        cls.calls.append((url.netloc, driver, user))
        return pafs.LocalFileSystem()


def test_legacy_hdfs_connector_hook_is_used_when_given():
    resolver = FilesystemResolver("hdfs://nn:8020/ds", connector=_LocalConnector, user="u")
    assert isinstance(resolver.filesystem(), pafs.LocalFileSystem)
    assert _LocalConnector.calls[-1] == ("nn:8020", "libhdfs3", "u")


def test_unknown_hdfs_driver_is_refused_naming_the_argument():
    with pytest.raises(PetastormArgumentError, match="hdfs_driver"):
        FilesystemResolver("hdfs://nn/ds", hdfs_driver="webhdfs")


# -- fsspec protocols ----------------------------------------------------------------------------------

def test_fsspec_memory_protocol_resolves_wrapped_in_pyfilesystem_and_reads_back():
    memory = fsspec.filesystem("memory")
    with memory.open("/fsutils-test/ds/part-0.parquet", "wb") as f:
        pq.write_table(TABLE, f)
    try:
        resolver = FilesystemResolver("memory://fsutils-test/ds/")
        fs = resolver.filesystem()
        assert isinstance(fs, pafs.PyFileSystem) and isinstance(fs.handler, pafs.FSSpecHandler)
        assert resolver.get_dataset_path() == "/fsutils-test/ds"
        assert pq.read_table(resolver.get_dataset_path(), filesystem=fs).equals(TABLE)
    finally:
        memory.rm("/fsutils-test", recursive=True)


@pytest.mark.parametrize("url, package", [
    ("gs://bucket/ds", "gcsfs"),
    ("gcs://bucket/ds", "gcsfs"),
    ("abfs://container@account.dfs.core.windows.net/ds", "adlfs"),
    ("abfss://container@account.dfs.core.windows.net/ds", "adlfs"),
    ("az://container/ds", "adlfs"),
])
def test_missing_fsspec_driver_names_the_url_and_the_package(url, package, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed, even where it is
    for protocol in ("gs", "gcs", "abfs", "az", "abfss"):
        if protocol in fsspec.registry:  # loaded drivers
            pytest.fail(f"fsspec already has a {protocol} driver loaded; this test needs it absent")
    with pytest.raises(PetastormFilesystemError) as info:
        FilesystemResolver(url)
    assert url in str(info.value)
    assert f"pip install {package}" in str(info.value)


def test_unknown_scheme_names_the_url_with_the_original_wording():
    with pytest.raises(PetastormFilesystemError, match="Protocol not known: nosuchfs") as info:
        get_filesystem_and_path_or_paths("nosuchfs://host/data")
    assert "nosuchfs://host/data" in str(info.value)
    assert isinstance(info.value, ValueError)


# -- filesystem= -------------------------------------------------------------------------------------------

def test_given_pyarrow_filesystem_is_used_as_is(tmp_path):
    pq.write_table(TABLE, str(tmp_path / "f.parquet"))
    given = pafs.LocalFileSystem()
    fs, path = get_filesystem_and_path_or_paths(f"file://{tmp_path}", filesystem=given)
    assert fs is given and path == str(tmp_path)
    assert pq.read_table(path, filesystem=fs).equals(TABLE)


def test_given_fsspec_filesystem_is_wrapped_and_gives_the_path():
    memory = fsspec.filesystem("memory")
    with memory.open("/fsutils-given/f.parquet", "wb") as f:
        pq.write_table(TABLE, f)
    try:
        fs, path = get_filesystem_and_path_or_paths("memory://fsutils-given/f.parquet", filesystem=memory)
        assert isinstance(fs, pafs.PyFileSystem) and fs.handler.fs is memory
        assert path == "/fsutils-given/f.parquet"
        assert pq.read_table(path, filesystem=fs).equals(TABLE)
    finally:
        memory.rm("/fsutils-given", recursive=True)


def test_given_filesystem_takes_precedence_over_storage_options_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="storage_options"):
        fs, _ = get_filesystem_and_path_or_paths(str(tmp_path), storage_options={"key": "x"},
                                                 filesystem=pafs.LocalFileSystem())
    assert isinstance(fs, pafs.LocalFileSystem)


def test_something_that_is_not_a_filesystem_is_refused_naming_the_argument(tmp_path):
    with pytest.raises(PetastormArgumentError, match=r"filesystem must be a pyarrow.fs.FileSystem.*str"):
        FilesystemResolver(str(tmp_path), filesystem="/tmp")


# -- lists of URLs ---------------------------------------------------------------------------------------

def test_list_of_local_file_urls_gives_one_filesystem_and_paths_in_order(tmp_path):
    files = [tmp_path / f"part-{i}.parquet" for i in range(3)]
    for i, f in enumerate(files):
        pq.write_table(pa.table({"id": [i]}), str(f))
    urls = [f"file://{files[2]}", f"file://{files[0]}", f"file://{files[1]}"]
    fs, paths = get_filesystem_and_path_or_paths(urls)
    assert isinstance(fs, pafs.LocalFileSystem)
    assert paths == [str(files[2]), str(files[0]), str(files[1])]
    assert [pq.read_table(p, filesystem=fs)["id"][0].as_py() for p in paths] == [2, 0, 1]


def test_list_of_s3_urls_keeps_the_bucket_in_every_path():
    fs, paths = get_filesystem_and_path_or_paths(
        ["s3://b/x/1.parquet", "s3://b/y/2.parquet"],
        storage_options={"endpoint_url": "http://127.0.0.1:1", "region": "us-east-1"})
    assert isinstance(fs, pafs.S3FileSystem)
    assert paths == ["b/x/1.parquet", "b/y/2.parquet"]


@pytest.mark.parametrize("urls", [
    ["file:///a/1.parquet", "s3://b/2.parquet"],
    ["s3://bucket-one/1.parquet", "s3://bucket-two/2.parquet"],
    ["hdfs://nn1/1.parquet", "hdfs://nn2/2.parquet"],
])
def test_list_mixing_filesystems_is_refused_naming_both_urls(urls):
    with pytest.raises(PetastormFilesystemError, match="same scheme and netloc") as info:
        get_filesystem_and_path_or_paths(urls)
    assert urls[0] in str(info.value) and urls[1] in str(info.value)


def test_empty_list_of_urls_is_refused():
    with pytest.raises(PetastormArgumentError, match="empty"):
        get_filesystem_and_path_or_paths([])


# -- filesystem_factory --------------------------------------------------------------------------------------

def test_filesystem_factory_pickles_and_recreates_the_filesystem(tmp_path):
    pq.write_table(TABLE, str(tmp_path / "f.parquet"))
    for url in (str(tmp_path), f"file://{tmp_path}"):
        resolver = FilesystemResolver(url)
        fs = pickle.loads(pickle.dumps(resolver.filesystem_factory()))()
        assert pq.read_table(resolver.get_dataset_path(), filesystem=fs).equals(TABLE)


def test_filesystem_is_created_once_per_resolver(tmp_path):
    resolver = FilesystemResolver(str(tmp_path))
    assert resolver.filesystem() is resolver.filesystem()


def test_storage_options_must_be_a_dict():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PetastormArgumentError, match="storage_options must be a dict"):
            FilesystemResolver("s3://b/p", storage_options=[("key", "v")])


# -- gs://, gcs://, abfs:// through fsspec, with stub drivers (gcsfs/adlfs are not installed) ----------------

class _StubDriver(MemoryFileSystem):
    """A driver that stores files in memory and records its constructor's keyword arguments.

    Paths are those of a real object store driver: ``bucket/key`` (the scheme stripped, no leading ``/``).
    """

    cachable = False  # every resolution makes its own instance: init_kwargs belong to that call
    root_marker = ""
    _strip_protocol = classmethod(fsspec.AbstractFileSystem._strip_protocol.__func__)

    def __init__(self, *args, **storage_options):
        super().__init__(*args)
        self.init_kwargs = dict(storage_options)


class _GcsStub(_StubDriver):
    protocol = ("gs", "gcs")
    store = {}
    pseudo_dirs = [""]


class _AbfsStub(_StubDriver):
    """Like adlfs: ``abfs://container@account.dfs.core.windows.net/p`` gives ``account_name`` from the URL and
    the path ``container/p``."""

    protocol = ("abfs", "az", "abfss")
    store = {}
    pseudo_dirs = [""]

    @staticmethod
    def _get_kwargs_from_urls(url):
        netloc = urlparse(url).netloc
        return {"account_name": netloc.split("@", 1)[1].split(".")[0]} if "@" in netloc else {}

    @classmethod
    def _strip_protocol(cls, path):
        path = super()._strip_protocol(path)
        container, _, rest = path.partition("/")
        return container.split("@", 1)[0] + ("/" + rest if rest else "")


_STUBS = {"gs": _GcsStub, "gcs": _GcsStub, "abfs": _AbfsStub}


@pytest.fixture
def stub_drivers():
    """Register the stubs for gs, gcs and abfs; afterwards the registry is as it was (no driver)."""
    from fsspec.registry import _registry

    saved = {protocol: _registry.get(protocol) for protocol in _STUBS}
    try:
        for protocol, cls in _STUBS.items():
            fsspec.register_implementation(protocol, cls, clobber=True)
        yield _STUBS
    finally:
        for protocol, previous in saved.items():
            if previous is None:
                _registry.pop(protocol, None)
            else:
                _registry[protocol] = previous
        _GcsStub.store.clear()
        _AbfsStub.store.clear()


def _stub_inside(fs):
    assert isinstance(fs, pafs.PyFileSystem) and isinstance(fs.handler, pafs.FSSpecHandler)
    return fs.handler.fs


@pytest.mark.parametrize("url", ["gs://bucket/data/set/", "gcs://bucket/data/set", "gs://bucket/data/set"])
def test_gcs_urls_resolve_through_the_fsspec_driver_keeping_the_bucket(stub_drivers, url):
    options = {"project": "my-project", "token": "anon"}
    fs, path = get_filesystem_and_path_or_paths(url, storage_options=options)
    driver = _stub_inside(fs)
    assert type(driver) is _GcsStub
    assert driver.init_kwargs == options
    assert path == "bucket/data/set"


def test_gcs_resolver_creates_the_filesystem_once_and_its_factory_recreates_it(stub_drivers):
    resolver = FilesystemResolver("gs://bucket/ds", storage_options={"project": "p"})
    assert resolver.get_dataset_path() == "bucket/ds"
    assert resolver.parsed_dataset_url().scheme == "gs"
    fs = resolver.filesystem()
    assert fs is resolver.filesystem()
    again = pickle.loads(pickle.dumps(resolver.filesystem_factory()))()
    assert _stub_inside(again) is not _stub_inside(fs)
    assert type(_stub_inside(again)) is _GcsStub and _stub_inside(again).init_kwargs == {"project": "p"}


def test_gcs_dataset_reads_back_through_the_wrapped_driver(stub_drivers):
    with _GcsStub().open("gs://bucket/ds/part-0.parquet", "wb") as f:
        pq.write_table(TABLE, f)
    fs, path = get_filesystem_and_path_or_paths("gs://bucket/ds/")
    assert path == "bucket/ds"
    assert pq.read_table(path, filesystem=fs).equals(TABLE)
    from petastorm import make_batch_reader

    with make_batch_reader("gcs://bucket/ds", reader_pool_type="dummy",
                           storage_options={"project": "p"}) as r:
        ids = [int(i) for batch in r for i in batch.id]
    assert ids == [1, 2, 3]


def test_list_of_gcs_urls_gives_one_driver_and_bucket_paths(stub_drivers):
    fs, paths = get_filesystem_and_path_or_paths(["gs://b/x/1.parquet", "gs://b/y/2.parquet"],
                                                 storage_options={"project": "p"})
    assert type(_stub_inside(fs)) is _GcsStub and _stub_inside(fs).init_kwargs == {"project": "p"}
    assert paths == ["b/x/1.parquet", "b/y/2.parquet"]


def test_abfs_url_resolves_with_url_kwargs_and_storage_options_reaching_the_driver(stub_drivers):
    fs, path = get_filesystem_and_path_or_paths("abfs://container@account.dfs.core.windows.net/data/ds/",
                                                storage_options={"account_key": "secret"})
    driver = _stub_inside(fs)
    assert type(driver) is _AbfsStub
    assert driver.init_kwargs == {"account_name": "account", "account_key": "secret"}
    assert path == "container/data/ds"


def test_abfs_storage_options_override_what_the_url_gives(stub_drivers):
    resolver = FilesystemResolver("abfs://container@account.dfs.core.windows.net/ds",
                                  storage_options={"account_name": "other"})
    assert _stub_inside(resolver.filesystem()).init_kwargs == {"account_name": "other"}
    plain = FilesystemResolver("abfs://container/ds", storage_options={"account_name": "acct", "anon": True})
    assert plain.get_dataset_path() == "container/ds"
    assert _stub_inside(plain.filesystem()).init_kwargs == {"account_name": "acct", "anon": True}


def test_stub_drivers_are_gone_after_the_fixture():
    for protocol in _STUBS:
        assert protocol not in fsspec.registry
