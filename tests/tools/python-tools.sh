#!/usr/bin/env bash
# Puts the checkers of the deployment files that tests/tests/deploy.rs runs
# into DIR/venv/bin, from PyPI, every package (dependencies too) at the
# version below:
#  - kubernetes-validate: the manifests against the Kubernetes API's
#    OpenAPI schemas of a given Kubernetes version;
#  - checkov: security and configuration checks of the manifests and the
#    Dockerfile;
#  - docker-compose 1.29.2, the last Python Compose, whose `config` reads
#    and validates a compose file without a container engine. It needs
#    PyYAML<6 and jsonschema<4, so it has a venv of its own (DIR/venv-compose)
#    and a link in DIR/venv/bin.
# A venv that holds exactly these pins is kept, so a second run costs
# nothing. Usage: python-tools.sh DIR
set -euo pipefail
dir="${1:?usage: python-tools.sh DIR}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

checkers="
    aiodns==3.6.1 aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiomultiprocess==0.9.1
    aiosignal==1.4.0 annotated-types==0.8.0 argcomplete==3.7.2 asteval==1.0.6
    attrs==26.1.0 bc-detect-secrets==1.5.52 bc-jsonpath-ng==1.6.1
    bc-python-hcl2==0.4.3 beartype==0.23.1 beautifulsoup4==4.15.0
    boolean.py==5.0 boto3==1.35.49 botocore==1.35.99 cached-property==2.0.1
    cachetools==5.5.2 certifi==2026.10.19.post1 cffi==2.1.1
    charset-normalizer==3.5.3 checkov==3.3.30 click==8.5.1
    click-option-group==0.5.10 cloudsplaining==0.7.0 colorama==0.4.6
    ConfigArgParse==1.9.0 contextlib2==21.6.0 cyclonedx-python-lib==7.6.2
    decorator==5.3.1 defusedxml==0.7.1 docker==7.2.0 dockerfile-parse==2.0.1
    dpath==2.1.3 ecdsa==0.19.2 frozenlist==1.8.0 gitdb==4.0.12 GitPython==3.2.1
    idna==3.20 importlib_metadata==7.2.1 importlib_resources==7.1.0
    Jinja2==3.1.6 jmespath==1.1.0 jsonschema==4.26.0
    jsonschema-specifications==2025.9.1 junit-xml==1.9
    kubernetes-validate==1.37.0 lark==1.3.1 license-expression==30.4.4
    Markdown==3.11.3 MarkupSafe==3.0.4 multidict==7.2.1 networkx==2.6.3
    numpy==2.4.6 orjson==3.13.0 packageurl-python==0.13.4 packaging==23.2
    platformdirs==4.14.9 ply==3.11 policy_sentry==0.13.2 prettytable==3.18.0
    propcache==0.5.4 py-serializable==1.1.2 pycares==4.11.0 pycep-parser==0.5.1
    pycparser==3.12 pydantic==2.14.4 pydantic_core==2.50.5 pyparsing==3.3.3
    python-dateutil==2.9.0.post0 PyYAML==6.0.4 rdflib==7.6.0 referencing==0.37.0
    regex==2026.11.19 requests==2.34.2 rpds-py==2026.9.1 rustworkx==0.18.1
    s3transfer==0.10.4 schema==0.7.5 semantic-version==2.10.0 six==1.17.0
    smmap==5.0.3 sortedcontainers==2.4.0 soupsieve==4.1.3 spdx-tools==0.8.5
    tabulate==0.9.0 termcolor==2.3.0 tqdm==4.70.1 typing-inspection==0.4.5
    typing_extensions==4.16.0 unidiff==1.0.1 uritools==7.0.1 urllib3==2.8.0
    wcwidth==0.9.4 xmltodict==1.0.4 yarl==1.25.1 zipp==4.1.2
"
# PyYAML 5.3.1 has no wheel for this Python; it builds from source in pure
# Python (5.4 and later need Cython < 3 to build).
compose="
    attrs==26.1.0 bcrypt==5.0.0 certifi==2026.10.19.post1 cffi==2.1.1
    charset-normalizer==3.5.3 cryptography==50.0.2 distro==1.9.0 docker==7.2.0
    docker-compose==1.29.2 dockerpty==0.4.1 docopt==0.6.2 idna==3.20
    invoke==3.0.3 jsonschema==3.2.0 paramiko==5.1.0 pycparser==3.12
    PyNaCl==1.6.2 pyrsistent==0.20.0 python-dotenv==0.21.1 PyYAML==5.3.1
    requests==2.34.2 six==1.17.0 texttable==1.7.2 urllib3==2.8.0
    websocket-client==0.59.0
"

# provide VENV PINS: makes VENV hold exactly PINS (kept if it already does).
provide() {
    local venv="$1" pins="$2"
    if printf '%s' "$pins" | cmp -s - "$venv/pins.txt"; then
        return 0
    fi
    local started=$SECONDS
    rm -rf "$venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086 # one argument per pin
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input $pins
    "$venv/bin/python" -m pip check >/dev/null
    printf '%s' "$pins" >"$venv/pins.txt"
    echo "python-tools.sh: installed $venv in $((SECONDS - started)) s" >&2
}

provide "$dir/venv" "$checkers"
provide "$dir/venv-compose" "$compose"
ln -sf ../../venv-compose/bin/docker-compose "$dir/venv/bin/docker-compose"
for tool in kubernetes-validate checkov docker-compose; do
    [ -x "$dir/venv/bin/$tool" ] || { echo "python-tools.sh: no $dir/venv/bin/$tool" >&2; exit 1; }
done
