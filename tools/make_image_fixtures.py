#!/usr/bin/python3
"""Makes the committed image fixtures under tests/data/images/.

    /usr/bin/python3 tools/make_image_fixtures.py [--shared /work/shared/data]

formats/  a 64x48 "test card" (four flat colour quadrants) written in every supported format and
          variant (16-bit, palette, grey, alpha, CMYK, EXIF-rotated, animated, BMP flavours, ...).
bad/      hand-crafted malformed or hostile files (decompression bombs, corrupt chunks, ...).
real/     small real drawings; only made with --shared (the source data directory), see SOURCE.md.

Needs Debian's python3-pil and python3-numpy. Output is deterministic for a given Pillow version.
"""
import argparse
import io
import os
import struct
import zlib

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "images")
W, H = 64, 48
RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def card_array():
    """Quadrants: top-left red, top-right green, bottom-left blue, bottom-right yellow."""
    a = np.zeros((H, W, 3), np.uint8)
    a[: H // 2, : W // 2] = RED
    a[: H // 2, W // 2 :] = GREEN
    a[H // 2 :, : W // 2] = BLUE
    a[H // 2 :, W // 2 :] = YELLOW
    return a


def alpha_array():
    """Alpha for the RGBA variants: top-right fully transparent, bottom-left half (128)."""
    a = np.full((H, W), 255, np.uint8)
    a[: H // 2, W // 2 :] = 0
    a[H // 2 :, : W // 2] = 128
    return a


def grey_array():
    """Grey quadrants 0, 85, 170, 255 (TL, TR, BL, BR)."""
    g = np.zeros((H, W), np.uint8)
    g[: H // 2, W // 2 :] = 85
    g[H // 2 :, : W // 2] = 170
    g[H // 2 :, W // 2 :] = 255
    return g


# --- minimal PNG writer (for 16-bit RGB, which Pillow cannot write, and for broken files) -------

def chunk(kind, data, crc=None):
    if crc is None:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_bytes(width, height, bit_depth, colour_type, rows, extra=b""):
    sig = b"\x89PNG\r\n\x1a\n"
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return sig + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def save(img, path, **kw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, **kw)


def bmp_bytes(width, height, bpp, compression, pixel_rows, header_size=40, masks=b"", palette=b"", top_down=False):
    """A BMP with a BITMAPINFOHEADER-family header; pixel_rows are already padded, top row first."""
    rows = pixel_rows if top_down else list(reversed(pixel_rows))
    pixels = b"".join(rows)
    info = struct.pack("<IiiHHIIiiII", header_size, width, -height if top_down else height, 1, bpp, compression,
                       len(pixels), 2835, 2835, 0, 0)
    if header_size > 40:
        # V4/V5: masks live in the header; pad the rest (colour space etc.) with zeros.
        info += masks.ljust(16, b"\x00")
        info = info.ljust(header_size, b"\x00")
        masks = b""
    offset = 14 + len(info) + len(masks) + len(palette)
    head = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    return head + info + masks + palette + pixels


def make_formats():
    out = os.path.join(ROOT, "formats")
    card = card_array()
    alpha = alpha_array()
    grey = grey_array()
    rgb = Image.fromarray(card, "RGB")
    rgba = Image.fromarray(np.dstack([card, alpha]), "RGBA")

    # PNG
    save(rgb, f"{out}/card.png")
    save(rgba, f"{out}/card_rgba.png")
    save(Image.fromarray(grey, "L"), f"{out}/card_grey.png")
    save(Image.fromarray(np.dstack([grey, alpha]), "LA"), f"{out}/card_grey_alpha.png")
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=4)
    save(pal, f"{out}/card_palette.png")
    # Palette with a transparent entry: the green quadrant's index becomes transparent.
    green_index = pal.getpixel((W - 1, 0))
    save(pal, f"{out}/card_palette_trns.png", transparency=green_index)
    # 16-bit RGB and RGBA (v * 257, so any 16 -> 8 bit rule gives v back).
    c16 = card.astype(">u2") * 257
    write(f"{out}/card_16.png", png_bytes(W, H, 16, 2, [c16[y].tobytes() for y in range(H)]))
    a16 = np.dstack([c16, alpha.astype(">u2") * 257]).astype(">u2")
    write(f"{out}/card_rgba16.png", png_bytes(W, H, 16, 6, [a16[y].tobytes() for y in range(H)]))
    g16 = grey.astype(">u2") * 257
    write(f"{out}/card_grey16.png", png_bytes(W, H, 16, 0, [g16[y].tobytes() for y in range(H)]))

    # JPEG
    save(rgb, f"{out}/card.jpg", quality=95)
    save(rgb, f"{out}/card_progressive.jpg", quality=95, progressive=True)
    save(Image.fromarray(grey, "L"), f"{out}/card_grey.jpg", quality=95)
    save(rgb.convert("CMYK"), f"{out}/card_cmyk.jpg", quality=95)
    # EXIF orientation: store the pixels so that applying the tag gives the upright card back.
    for tag, stored in ((3, rgb.transpose(Image.ROTATE_180)), (6, rgb.transpose(Image.ROTATE_90)),
                        (8, rgb.transpose(Image.ROTATE_270))):
        exif = Image.Exif()
        exif[0x0112] = tag
        save(stored, f"{out}/card_exif{tag}.jpg", quality=95, exif=exif.tobytes())

    # WebP
    save(rgb, f"{out}/card_lossless.webp", lossless=True)
    save(rgb, f"{out}/card_lossy.webp", quality=95)
    save(rgba, f"{out}/card_rgba.webp", lossless=True)

    # GIF: single frame with a transparent index, and an animation whose later frames differ.
    gif = rgb.convert("P", palette=Image.ADAPTIVE, colors=4)
    save(gif, f"{out}/card.gif")
    save(gif, f"{out}/card_trns.gif", transparency=gif.getpixel((W - 1, 0)))
    frames = [gif] + [Image.new("RGB", (W, H), c).convert("P", palette=Image.ADAPTIVE, colors=2)
                      for c in ((0, 0, 0), (255, 0, 255))]
    save(frames[0], f"{out}/card_anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)

    # BMP: Pillow's 24-bit, 8-bit palette and 1-bit writers, plus hand-made variants.
    save(rgb, f"{out}/card.bmp")
    save(pal, f"{out}/card_8bit.bmp")
    save(Image.fromarray(np.where(grey >= 128, 255, 0).astype(np.uint8), "L").convert("1"), f"{out}/card_1bit.bmp")

    def pad4(b):
        return b + b"\x00" * (-len(b) % 4)

    # 24-bit top-down (negative height).
    rows = [pad4(card[y][:, ::-1].tobytes()) for y in range(H)]
    write(f"{out}/card_topdown.bmp", bmp_bytes(W, H, 24, 0, rows, top_down=True))
    # 16-bit RGB565 with BI_BITFIELDS masks after a 40-byte header.
    r5 = card[..., 0].astype(np.uint16) >> 3
    g6 = card[..., 1].astype(np.uint16) >> 2
    b5 = card[..., 2].astype(np.uint16) >> 3
    p565 = ((r5 << 11) | (g6 << 5) | b5).astype("<u2")
    rows = [pad4(p565[y].tobytes()) for y in range(H)]
    write(f"{out}/card_565.bmp", bmp_bytes(W, H, 16, 3, rows, masks=struct.pack("<III", 0xF800, 0x07E0, 0x001F)))
    # 32-bit BGRA with an alpha mask in a V5 header.
    bgra = np.dstack([card[..., 2], card[..., 1], card[..., 0], alpha])
    rows = [bgra[y].tobytes() for y in range(H)]
    write(f"{out}/card_v5_alpha.bmp",
          bmp_bytes(W, H, 32, 3, rows, header_size=124,
                    masks=struct.pack("<IIII", 0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000)))
    # 4-bit palette (4 colours used).
    palette4 = b"".join(bytes((c[2], c[1], c[0], 0)) for c in (RED, GREEN, BLUE, YELLOW))
    idx = np.zeros((H, W), np.uint8)
    idx[: H // 2, W // 2 :] = 1
    idx[H // 2 :, : W // 2] = 2
    idx[H // 2 :, W // 2 :] = 3
    rows = [pad4(bytes((idx[y, x] << 4) | idx[y, x + 1] for x in range(0, W, 2))) for y in range(H)]
    info_palette = palette4
    data = bmp_bytes(W, H, 4, 0, rows, palette=info_palette)
    # biClrUsed = 4 (offset 14 + 32).
    data = data[:46] + struct.pack("<I", 4) + data[50:]
    write(f"{out}/card_4bit.bmp", data)

    # TIFF
    save(rgb, f"{out}/card.tif")
    save(rgb, f"{out}/card_deflate.tif", compression="tiff_adobe_deflate")
    save(rgba, f"{out}/card_rgba.tif")
    save(rgb.convert("CMYK"), f"{out}/card_cmyk.tif")
    save(rgb, f"{out}/card_multipage.tif", save_all=True, append_images=[Image.new("RGB", (W, H), (0, 0, 0))])



def make_bad():
    out = os.path.join(ROOT, "bad")
    rows = [b"\x00\x00\x00" * 4 for _ in range(4)]
    # Decompression bombs: valid headers that claim 10^10 pixels.
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    write(f"{out}/bomb.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
          chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    small = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(small, "JPEG", quality=90)
    jpg = bytearray(small.getvalue())
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5: sof + 9] = struct.pack(">HH", 65000, 65000)
    write(f"{out}/bomb.jpg", bytes(jpg))
    gif = (b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff" +
           b"," + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x02\x02\x44\x01\x00;")
    write(f"{out}/bomb.gif", gif)
    # WebP lossless header: 14-bit width-1 and height-1 -> 16000 x 16000 (RIFF chunks have even sizes).
    bits = (15999) | (15999 << 14)
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 15
    write(f"{out}/bomb.webp", b"RIFF" + struct.pack("<I", 4 + 8 + len(vp8l)) + b"WEBP" + b"VP8L" +
          struct.pack("<I", len(vp8l)) + vp8l)
    write(f"{out}/bomb.bmp", bmp_bytes(50000, 50000, 24, 0, [b"\x00" * 12]))
    # Corrupt PNGs.
    write(f"{out}/palette_bad_length.png",
          png_bytes(4, 4, 8, 3, rows=[b"\x00" * 4] * 4, extra=chunk(b"PLTE", b"\x00" * 7)))
    write(f"{out}/palette_missing.png", png_bytes(4, 4, 8, 3, rows=[b"\x00" * 4] * 4))
    good = png_bytes(4, 4, 8, 2, rows)
    write(f"{out}/bad_ihdr_crc.png", good[:29] + b"\xde\xad\xbe\xef" + good[33:])
    write(f"{out}/bad_zlib.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)) +
          chunk(b"IDAT", b"\x78\x9c" + bytes(range(40))) + chunk(b"IEND", b""))
    write(f"{out}/bad_bit_depth.png", png_bytes(4, 4, 7, 2, rows))
    # GIF with a header and colour table but no image at all.
    write(f"{out}/no_frames.gif", b"GIF89a" + struct.pack("<HHBBB", 4, 4, 0x80, 0, 0) + b"\x00" * 6 + b";")
    # BMPs: palette index past the palette, RLE compression, zero width.
    palette2 = b"\x00\x00\x00\x00\xff\xff\xff\x00"
    bmp = bmp_bytes(4, 4, 8, 0, [bytes((0, 1, 200, 1))] * 4, palette=palette2)
    bmp = bmp[:46] + struct.pack("<I", 2) + bmp[50:]
    write(f"{out}/palette_index.bmp", bmp)
    write(f"{out}/rle8.bmp", bmp_bytes(4, 4, 8, 1, [b"\x00" * 4] * 4, palette=palette2))
    write(f"{out}/zero_width.bmp", bmp_bytes(0, 4, 24, 0, [b""] * 4))
    # TIFF whose single strip points past the end of the file.
    entries = [(256, 3, 1, 4), (257, 3, 1, 4), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 100000), (277, 3, 1, 1), (278, 3, 1, 4), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\x00" * 4
    write(f"{out}/strip_past_end.tif", b"II*\x00" + struct.pack("<I", 8) + ifd)


def make_real(shared):
    out = os.path.join(ROOT, "real")
    os.makedirs(out, exist_ok=True)
    clip = os.path.join(shared, "openclipart-manga")
    renpy = os.path.join(shared, "renpy-images")
    for name in ("blue_girl_dirk_struve_.png", "chibi_character_rick_.png", "manga_girl_dirk_struve_01.png"):
        with open(os.path.join(clip, name), "rb") as f:
            write(os.path.join(out, name), f.read())
    with open(os.path.join(renpy, "anime", "thequestion_bg_lecturehall.jpg"), "rb") as f:
        write(os.path.join(out, "thequestion_bg_lecturehall.jpg"), f.read())
    # Half-size sprites (RGBA, Lanczos) and reduced backgrounds keep the total small.
    for name in ("demo_eileen_happy.png", "demo_lucy_happy.png", "thequestion_sylvie_blue_normal.png",
                 "thequestion_ios-launchimage.png"):
        im = Image.open(os.path.join(renpy, "anime", name))
        im = im.resize((im.width // 2, im.height // 2), Image.LANCZOS)
        im.save(os.path.join(out, name), optimize=True)
    for sub, name, width in (("anime", "thequestion_bg_uni.jpg", 640), ("anime", "demo_concert1.png", 600),
                             ("photo-backgrounds", "demo_bg_washington.jpg", 640)):
        im = Image.open(os.path.join(renpy, sub, name)).convert("RGB")
        im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        im.save(os.path.join(out, os.path.splitext(name)[0] + ".jpg"), quality=88)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", help="source data directory (openclipart-manga/, renpy-images/)")
    args = ap.parse_args()
    make_formats()
    make_bad()
    if args.shared:
        make_real(args.shared)


if __name__ == "__main__":
    main()
