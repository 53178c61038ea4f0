"""
Atomic, no-clobber file output.

Every file the package writes goes to a temporary file in the destination folder first and is then
renamed into place, so a crash or a kill never leaves a half-written FITS or PNG under the final
name, and an existing file is only replaced when the caller says so.
"""

import contextlib
import glob
import os
import socket
import tempfile
import warnings
from pathlib import Path

__all__ = ["atomic_output", "read_map", "remove_stale_parts", "save_map"]


@contextlib.contextmanager
def atomic_output(path, *, overwrite=False):
    """
    Yield a temporary path beside ``path``; on success move it to ``path``.

    Parameters
    ----------
    path : str or `pathlib.Path`
        Final destination.
    overwrite : bool, optional
        Replace an existing ``path``. Without it an existing file raises `FileExistsError`, both
        before writing and, for a file that appeared meanwhile, at the rename.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_part_prefix(path)}{_owner()}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes the file private (0600); a finished output gets the mode any new file would get.
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() refuses an existing target: no race between the check above and here.
            os.link(tmp, path)
            tmp.unlink()
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise FileExistsError(
            f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it."
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _part_prefix(path):
    return f".{Path(path).name}."


def _host():
    """This machine's short name, as temporary files record it (pids of other machines mean nothing)."""
    return socket.gethostname().split(".")[0]


def _owner():
    """``host-pid`` of this process, as temporary files name it."""
    return f"{_host()}-{os.getpid()}"


def remove_stale_parts(path):
    """
    Remove the temporary files of ``path`` left by killed processes of this machine.

    A process killed during a write (SIGKILL, a power cut) cannot remove its temporary file
    ``.NAME.HOST-PID.XXXXXXXX.part``; the next write of the same output removes those whose process
    no longer runs. Files of live processes, of other machines (a shared file system) and of other
    names are left alone.

    Returns
    -------
    list of `pathlib.Path`
        The files removed.
    """
    path = Path(path)
    prefix = f"{_part_prefix(path)}{_host()}-"
    removed = []
    if not path.parent.is_dir():
        return removed
    for part in path.parent.glob(f"{glob.escape(prefix)}*.part"):
        pid = part.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                part.unlink()
                removed.append(part)
    return removed


def _alive(pid):
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there: assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: keep its file
    return True


def _umask():
    """The process's file-mode creation mask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic, but only at the end of a write)
    os.umask(mask)
    return mask


def save_map(smap, path, *, overwrite=False):
    """
    Save ``smap`` as FITS at ``path`` through a temporary file and a rename.

    Parameters
    ----------
    smap : `~sunpy.map.GenericMap`
        Map to write.
    path : str or `pathlib.Path`
        Destination FITS file.
    overwrite : bool, optional
        Replace an existing file.
    """
    with atomic_output(path, overwrite=overwrite) as tmp:
        smap.save(tmp, filetype="fits", overwrite=True)
    return Path(path)


def read_map(path):
    """
    Read one magnetogram file as a sunpy Map, with any failure told in one line.

    sunpy's notes about non-standard keys of real instrument headers are silenced: they are facts of
    the data, not problems of the file.

    Raises
    ------
    ValueError
        If ``path`` is not a readable file, cannot be read as a Map, holds more than one image (an
        `~sunpy_superres.UncertaintyMap` file is named as such), or its image has more than two
        dimensions (sunpy would keep the first plane only).
    """
    import sunpy.map
    from astropy.wcs import FITSFixedWarning
    from sunpy.util.exceptions import SunpyMetadataWarning, SunpyUserWarning

    path = Path(path)
    if path.is_dir():
        raise ValueError(
            "it is a folder, not a file; give one FITS file (for all the files of a folder use "
            "sunpy-superres batch 'FOLDER/*.fits' -o OUT_DIR)"
        )
    if not path.is_file():
        raise ValueError("the file does not exist")
    if path.stat().st_size == 0:
        raise ValueError("the file is empty (0 bytes); download or write it again")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SunpyMetadataWarning)
        warnings.simplefilter("ignore", FITSFixedWarning)
        # Told below, as a refusal: sunpy keeps the first plane of a cube and warns.
        warnings.filterwarnings("ignore", "This file contains more than 2 dimensions", SunpyUserWarning)
        try:
            smap = sunpy.map.Map(path)
        except Exception as err:  # noqa: BLE001 - any reader failure is the file's, told in one line
            raise ValueError(_unreadable(path, err)) from err
    if isinstance(smap, list):
        if _is_uncertainty_file(path):
            raise ValueError(
                "it is a sunpy-superres UncertaintyMap file (mean and standard deviation), an "
                "output at 0.5 arcsec/pixel, not an input; read it with "
                "sunpy_superres.UncertaintyMap.read()"
            )
        raise ValueError(f"the file holds {len(smap)} images; write the one to super-resolve to its own file")
    naxis = int(smap.meta.get("naxis", 2) or 2)
    if naxis > 2:
        shape = tuple(int(smap.meta.get(f"naxis{i}", 0)) for i in range(naxis, 0, -1))
        raise ValueError(
            f"its image is {naxis}-D with shape {shape}; a magnetogram is 2-D and sunpy would keep "
            "only the first plane. Write the plane to super-resolve to its own file, or pass "
            "sunpy.map.Map(data[i], header) to sunpy_superres.superresolve"
        )
    return smap


def _unreadable(path, err):
    """One line on why sunpy could not read ``path``, with what to do (not sunpy's ``allow_errors``)."""
    from astropy.io import fits

    # sunpy's reader suggests allow_errors=True, an option that only hides the failure.
    reason = " ".join(str(err).split()).replace(
        " If you want to bypass these errors, pass `allow_errors=True`.", ""
    )
    try:
        with fits.open(path) as hdus:
            image = next(
                (h for h in hdus if getattr(h, "is_image", False) and h.header.get("NAXIS", 0) >= 2), None
            )
            dtype = image.data.dtype if image is not None else None
    except Exception:  # noqa: BLE001 - not FITS at all, or truncated: sunpy's reason stands
        return (
            f"cannot read it as a sunpy Map ({reason}); the file is truncated, corrupt or not FITS: "
            "download or write it again"
        )
    if dtype is not None and (dtype.kind in "ub"):
        return (
            f"its data are {dtype} (unsigned), which cannot hold a line-of-sight field of both "
            "polarities: it is an image (e.g. a quick-look), not a magnetogram. Use the magnetogram FITS "
            "product in G"
        )
    return f"cannot read it as a sunpy Map: {reason}"


def _is_uncertainty_file(path):
    from astropy.io import fits

    try:
        with fits.open(path) as hdus:
            return "SRUNCERT" in hdus[0].header or "STD" in hdus
    except Exception:  # noqa: BLE001
        return False
