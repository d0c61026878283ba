"""The Dockerfile's build stage installs the C++ build dependencies that scripts/setup.sh --server
installs: a library added to one and not the other would break the image build (which CI does
not run; scripts/build_image.sh does) or the main job."""
import re

from conftest import ROOT

# What the server set-up installs for reasons other than compiling the C++ (compiler cache, the
# real-speech set, the OpenBLAS variant whose -dev package the Dockerfile already installs).
NOT_FOR_THE_IMAGE_BUILD = {"ccache", "libopenblas0-pthread", "python3", "python3-numpy", "python3-venv",
                           "asterisk-core-sounds-en", "asterisk-core-sounds-en-g722"}


def server_packages():
    text = (ROOT / "scripts" / "setup.sh").read_text()
    body = re.search(r"^SERVER_PACKAGES=\((.*?)^\)", text, re.S | re.M)
    assert body, "SERVER_PACKAGES=( ... ) not found in scripts/setup.sh"
    words = []
    for line in body.group(1).splitlines():
        words += line.split("#", 1)[0].split()
    return set(words)


def image_build_packages():
    text = (ROOT / "Dockerfile").read_text()
    stage = text.split("FROM ${BUILD_IMAGE} AS build", 1)[1].split("\nFROM ", 1)[0]
    install = re.search(r"apt-get install -y --no-install-recommends(.*?)&&", stage, re.S)
    assert install, "the build stage's apt-get install not found in the Dockerfile"
    return set(install.group(1).replace("\\", " ").split())


def test_the_image_builds_with_what_the_server_setup_installs():
    setup = server_packages() - NOT_FOR_THE_IMAGE_BUILD
    image = image_build_packages()
    assert "build-essential" in setup and "libgrpc++-dev" in setup, setup  # the parse found the list
    assert setup - image == set(), f"in scripts/setup.sh --server but not in the Dockerfile: {setup - image}"
    assert image - setup == set(), f"in the Dockerfile but not in scripts/setup.sh --server: {image - setup}"
