"""
reload.watchFiles: a change to the config file or a file it names reloads as SIGHUP does,
including Kubernetes' ConfigMap/Secret volume updates (the `..data` symlink swap) and editors'
rename-into-place; a burst of writes is one reload; a bad edit keeps the previous state whole.
"""
import os
import re

from conftest import WS_PATH, Frontgate, bearer, key_line, new_key, request, std_config
from test_kcp_index import eventually

WATCH = "reload: {watchFiles: true}\n"


def status(fg, key):
    return request(fg.port, "GET", f"/clusters/{WS_PATH}/api", headers=bearer(key)).status


def generations(fg):
    return [int(g) for g in re.findall(r"reloaded configuration generation (\d+)", fg.log())]


def test_a_changed_key_file_reloads_without_a_signal(shard, tmp_path):
    old, new = new_key(), new_key()
    fg = Frontgate(tmp_path / "fg", std_config(shard.url, extra=WATCH),
                   files={"keys.txt": key_line("ops", old) + "\n"}).start()
    try:
        assert status(fg, new) == 401
        fg.write("keys.txt", key_line("ops", old) + "\n" + key_line("new", new) + "\n")
        eventually(lambda: status(fg, new) == 200, "the new key works", timeout=10)
        assert "a file the configuration names changed (reload.watchFiles)" in fg.log()
        assert status(fg, old) == 200
        # a bad edit: the reload fails and the previous keys stay whole
        n = fg.nlines()
        fg.write("keys.txt", "not a key line\n")
        fg.wait_log(r"reload failed; still serving configuration generation", start=n, timeout=10)
        assert status(fg, new) == 200 and status(fg, old) == 200
        # fixed: applies again
        fg.write("keys.txt", key_line("new", new) + "\n")
        eventually(lambda: status(fg, old) == 401, "the fixed file applies", timeout=10)
    finally:
        fg.stop()


def test_a_burst_of_writes_is_one_reload(shard, tmp_path):
    key = new_key()
    fg = Frontgate(tmp_path / "fg", std_config(shard.url, extra=WATCH),
                   files={"keys.txt": key_line("ops", key) + "\n"}).start()
    try:
        for i in range(5):
            fg.write("keys.txt", key_line("ops", key) + "\n" + key_line(f"k{i}", new_key()) + "\n")
        fg.wait_log(r"reloaded configuration generation 2", timeout=10)
        fg.hup()  # a reload after the quiet period: the burst made exactly one before it
        assert generations(fg) == [2, 3], fg.log()
    finally:
        fg.stop()


def test_a_kubernetes_volume_swap_reloads(shard, tmp_path):
    """A ConfigMap/Secret volume: files are symlinks through ..data, swapped in one rename."""
    old, new = new_key(), new_key()
    fg = Frontgate(tmp_path / "fg", std_config(shard.url, extra=WATCH))
    vol = tmp_path / "fg"

    def version(name, keys_text):
        d = vol / name
        d.mkdir()
        (d / "frontgate.yaml").write_text(std_config(shard.url, extra=WATCH).replace(
            "file: keys.txt", "file: keys.txt") + 'admin: {address: "127.0.0.1:0"}\n')
        (d / "keys.txt").write_text(keys_text)

    version("..2026_12_08_a", key_line("ops", old) + "\n")
    os.symlink("..2026_12_08_a", vol / "..data")
    os.remove(vol / "frontgate.yaml")
    for f in ("frontgate.yaml", "keys.txt"):
        os.symlink(f"..data/{f}", vol / f)
    fg.start()
    try:
        assert status(fg, old) == 200 and status(fg, new) == 401
        version("..2026_12_08_b", key_line("new", new) + "\n")
        os.symlink("..2026_12_08_b", vol / "..data_tmp")
        os.rename(vol / "..data_tmp", vol / "..data")  # what the kubelet does
        eventually(lambda: status(fg, new) == 200, "the swapped volume applies", timeout=10)
        assert status(fg, old) == 401
    finally:
        fg.stop()


def test_without_the_option_files_are_not_watched(shard, tmp_path):
    key, other = new_key(), new_key()
    fg = Frontgate(tmp_path / "fg", std_config(shard.url),
                   files={"keys.txt": key_line("ops", key) + "\n"}).start()
    try:
        fg.write("keys.txt", key_line("other", other) + "\n")
        fg.hup()  # the write alone did not reload: this is generation 2
        assert generations(fg) == [2]
        assert status(fg, other) == 200
    finally:
        fg.stop()


def test_the_option_is_checked(shard, tmp_path):
    import subprocess
    from conftest import FRONTGATE_BIN
    p = tmp_path / "c.yaml"
    p.write_text(std_config(shard.url, keys=False, extra="reload: {watchFiles: sometimes}\n"))
    r = subprocess.run([FRONTGATE_BIN, "check", "-c", str(p)], capture_output=True, text=True)
    assert r.returncode != 0 and '"watchFiles" must be true or false' in r.stderr
    assert re.search(r"c\.yaml:\d+:\d+: ", r.stderr)
