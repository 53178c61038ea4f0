"""
Atomic, no-clobber file output.

Every file the package writes goes to a temporary file in the destination folder first and is then
renamed into place, so a crash or a kill never leaves a half-written FITS or PNG under the final
name, and an existing file is only replaced when the caller says so.
"""

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

__all__ = ["atomic_output", "read_map", "save_map"]


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
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
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
        If the file cannot be read as a Map, or holds more than one image.
    """
    import sunpy.map
    from astropy.wcs import FITSFixedWarning
    from sunpy.util.exceptions import SunpyMetadataWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SunpyMetadataWarning)
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            smap = sunpy.map.Map(path)
        except Exception as err:  # noqa: BLE001 - any reader failure is the file's, told in one line
            raise ValueError(f"cannot read it as a sunpy Map: {' '.join(str(err).split())}") from err
    if isinstance(smap, list):
        raise ValueError(f"the file holds {len(smap)} images; write the one to super-resolve to its own file")
    return smap
