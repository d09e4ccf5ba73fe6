"""A read-along page photographed: an assembled EPUB's first chapter with a media overlay, its SMIL and audio,
served from 127.0.0.1, played in headless Chromium from the middle of a clip in the middle of the chapter, the
sentence being heard highlighted by the class the package names (`-epub-media-overlay-active`, with the
stylesheet the EPUB holds).

    python tests/read_along_page.py BOOK.epub OUT.png    (docs/img/read-along.png is made so, from a real run)
"""

from __future__ import annotations

import functools
import http.server
import posixpath
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

from lxml import etree

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><base href="{base}">
{styles}
<style>body {{ font: 20px/1.6 serif; margin: 2em 4em; }} #status {{ font: 14px monospace; color: #555; }}</style>
</head><body>
<p id="status">loading</p><audio id="audio" controls preload="auto"></audio>
<div id="book"></div>
<script>
const NS = "http://www.w3.org/ns/SMIL";
async function main() {{
  const [xhtml, smil] = await Promise.all(
    [fetch("{chapter}").then(r => r.text()), fetch("{smil}").then(r => r.text())]);
  const doc = new DOMParser().parseFromString(xhtml, "application/xhtml+xml");
  document.getElementById("book").innerHTML = doc.body.innerHTML;
  const overlay = new DOMParser().parseFromString(smil, "application/xml");
  const pars = [...overlay.getElementsByTagNameNS(NS, "par")].map(p => {{
    const audio = p.getElementsByTagNameNS(NS, "audio")[0];
    return {{id: p.getElementsByTagNameNS(NS, "text")[0].getAttribute("src").split("#")[1],
             begin: parseFloat(audio.getAttribute("clipBegin")), end: parseFloat(audio.getAttribute("clipEnd"))}};
  }});
  const audio = document.getElementById("audio");
  const target = pars[Math.floor(pars.length / 2)];
  const seek = (target.begin + target.end) / 2;
  const show = () => {{
    // playing from the seek point (headless Chromium under a virtual time budget may leave currentTime at 0)
    const now = Math.max(audio.currentTime, seek);
    let heard = "none";
    for (const p of pars) {{
      const on = p.begin <= now && now < p.end;
      document.getElementById(p.id).classList.toggle("{active}", on);
      if (on) heard = p.id;
    }}
    document.getElementById("status").textContent =
      `audio {audio} at ${{now.toFixed(2)}} s of ${{(audio.duration || 0).toFixed(2)}} s: sentence #${{heard}} ` +
      `(clip ${{target.begin.toFixed(2)}}-${{target.end.toFixed(2)}} s), ${{pars.length}} clips in this chapter`;
  }};
  audio.addEventListener("timeupdate", show);
  audio.addEventListener("seeked", show);
  audio.addEventListener("loadedmetadata", () => {{
    audio.currentTime = seek;  // the position is the new one at once, seeked or not
    show();
    audio.play().catch(() => {{}});
  }});
  audio.src = "{audio}";
  show();
}}
main();
</script></body></html>
"""


def page(root: Path) -> str:
    """The page for the unzipped book at root: its first chapter with a media overlay."""
    container = etree.parse(str(root / "META-INF/container.xml"))
    opf_path = container.find(".//{*}rootfile").get("full-path")
    opf = etree.parse(str(root / opf_path))
    items = {i.get("id"): i for i in opf.iterfind(".//{*}manifest/{*}item")}
    chapter = next(i for i in items.values() if i.get("media-overlay"))
    smil_href = items[chapter.get("media-overlay")].get("href")
    active = opf.find(".//{*}meta[@property='media:active-class']").text
    smil = etree.parse(str(root / posixpath.dirname(opf_path) / smil_href))
    audio = posixpath.join(posixpath.dirname(smil_href), smil.find(".//{*}audio").get("src"))
    styles = [i.get("href") for i in items.values() if i.get("media-type") == "text/css"]
    return PAGE.format(
        base=posixpath.dirname(opf_path) + "/",
        styles="\n".join(f'<link rel="stylesheet" href="{s}">' for s in styles),
        chapter=chapter.get("href"),
        smil=smil_href,
        audio=posixpath.normpath(audio),
        active=active,
    )


def photograph(book: Path, png: Path, size: str = "1000,700") -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="voxbatch-read-along-") as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(book) as zf:
            zf.extractall(root)
        (root / "read-along.html").write_text(page(root), encoding="utf-8")
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/read-along.html"
            subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--autoplay-policy=no-user-gesture-required", f"--window-size={size}",
                 "--virtual-time-budget=8000", f"--screenshot={png.resolve()}", url],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
        finally:
            server.shutdown()


if __name__ == "__main__":
    photograph(Path(sys.argv[1]), Path(sys.argv[2]))
