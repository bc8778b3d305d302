"""Open the built documentation site in a headless browser and check its main pages.

Usage: ``python docs/check_site.py [HTML_DIR]`` (default ``docs/_build/html``), after
``sphinx-build -b html docs docs/_build/html``.

For each page, the browser (Chromium or Chrome, found on ``PATH`` or named by the
``CHROMIUM`` environment variable) loads the file, runs its scripts and dumps the DOM.
The check fails when the browser fails, when the page lacks the text it must show, or
when a link of the page points to a local file that the build did not write. Without a
browser it prints that it skipped and exits 0, so a build machine does not need one.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# page -> text its rendered DOM must contain
PAGES = {
    "index.html": ["sklearn-cpvae", "User guide", "API reference", "Examples"],
    "api.html": ["CPVAE", "VAE", "load", "leakage_report", "make_cross_population"],
    "generated/sklearn_cpvae.CPVAE.html": ["transform", "predict_proba", "Gallery examples"],
    "auto_examples/index.html": ["Shared and private codes", "Population swap"],
}
HREF = re.compile(r'\bhref="([^"]+)"')


def find_browser():
    named = os.environ.get("CHROMIUM")
    if named:
        return shutil.which(named) or named
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def dump_dom(browser, page):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{browser} exited with {done.returncode}: {done.stderr[-500:]}")
    return done.stdout


def broken_links(dom, page, root):
    """Local link targets of the page that are not files of the built site."""
    missing = set()
    for href in HREF.findall(dom):
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or not parts.path:
            continue  # external, or an anchor on the same page
        target = (page.parent / unquote(parts.path)).resolve()
        if root in target.parents and not target.exists():
            missing.add(parts.path)
    return sorted(missing)


def main(argv):
    root = Path(argv[1] if len(argv) > 1 else "docs/_build/html").resolve()
    browser = find_browser()
    if browser is None:
        print(f"check_site: no headless browser found ({', '.join(BROWSERS)}); skipped")
        return 0
    if not (root / "index.html").is_file():
        print(f"check_site: {root} has no index.html; build the site first")
        return 1
    failures = 0
    for name, expected in PAGES.items():
        page = root / name
        if not page.is_file():
            print(f"FAIL {name}: not built")
            failures += 1
            continue
        try:
            dom = dump_dom(browser, page)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"FAIL {name}: {exc}")
            failures += 1
            continue
        title = re.search(r"<title>(.*?)</title>", dom, re.S)
        absent = [text for text in expected if text not in dom]
        broken = broken_links(dom, page, root)
        status = "ok  " if not (absent or broken) else "FAIL"
        failures += status == "FAIL"
        print(
            f"{status} {name}: title {title.group(1).strip() if title else None!r}, "
            f"{len(dom)} characters of DOM, {len(HREF.findall(dom))} links"
            + (f"; missing text {absent}" if absent else "")
            + (f"; broken local links {broken}" if broken else "")
        )
    print(f"check_site: {len(PAGES) - failures} of {len(PAGES)} pages passed ({browser})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
