"""Damage one member's header fields of a zip archive (an .npz) in both places zipfile reads them: the
local file header and the central directory. Stands for a damaged download or disk where the archive still
opens but the member cannot be read back."""
import struct
import zipfile


def damage_zip_member(src, dst, member, method=None, encrypted=False):
    """Copy the zip ``src`` to ``dst`` with ``member``'s compression method set to ``method`` (e.g. 99, which
    zipfile does not know: NotImplementedError) and/or its 'encrypted' flag bit set (RuntimeError: password
    required)."""
    with zipfile.ZipFile(src) as z:
        info = z.getinfo(member)
    data = bytearray(open(src, "rb").read())
    local = info.header_offset
    assert data[local:local + 4] == b"PK\x03\x04"
    central = data.find(b"PK\x05\x06")                 # end of central directory -> its start
    central = struct.unpack_from("<I", data, central + 16)[0]
    while True:                                         # the member's central directory entry
        assert data[central:central + 4] == b"PK\x01\x02"
        n_name, n_extra, n_comment = struct.unpack_from("<HHH", data, central + 28)
        if data[central + 46:central + 46 + n_name].decode() == member:
            break
        central += 46 + n_name + n_extra + n_comment
    # flag bits at +6 (local) / +8 (central), compression method at +8 / +10
    for flags in (local + 6, central + 8):
        if encrypted:
            struct.pack_into("<H", data, flags, struct.unpack_from("<H", data, flags)[0] | 0x1)
        if method is not None:
            struct.pack_into("<H", data, flags + 2, method)
    with open(dst, "wb") as fh:
        fh.write(bytes(data))


def damage_npy_header(src, dst, member, old=b"()", new=b"( "):
    """Copy the .npz ``src`` to ``dst`` with ``old`` replaced by ``new`` in the .npy header of ``member`` (the
    archive rewritten with valid CRCs, each member compressed as before): a header numpy's parser cannot read.
    The default turns a 0-d array's shape "()" into "( " (for a 1-d array, ``old=b",)", new=b", "``), on
    which numpy's header parser raises tokenize.TokenError (a byte corruption of a stored member does this
    before its CRC is checked)."""
    with zipfile.ZipFile(src) as z:
        members = [(info, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(dst, "w") as out:
        for info, data in members:
            if info.filename == member:
                end = data.index(b"\n")             # the header ends at the first newline
                assert old in data[:end], f"{old!r} not in {member}'s header"
                data = data[:end].replace(old, new, 1) + data[end:]
            out.writestr(info, data, compress_type=info.compress_type)
