# linuxnet.netns: every set-up step the README promises lives here.
#   make lab        build the embedded lab and run site.yml on it (installs what it needs;
#                   SCENARIO=shared-snat: three guests behind one SNAT address; SCENARIO=nodeport)
#   make lab-down   remove the lab (whichever scenario built it)
#   make test       install what is needed, then run the whole suite (CI runs exactly this)
#   make bench      the benchmarks of bench/README.md
#   make molecule-vm  molecule/vm alone: the role on two qemu VMs over ssh, reboot included
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV := $(CURDIR)/.venv
VENV07 := $(CURDIR)/.venv-pyroute2-0.7
PY := $(VENV)/bin/python
PY07 := $(VENV07)/bin/python
COLL_ROOT := $(CURDIR)/.build/collections
COLL_LINK := $(COLL_ROOT)/ansible_collections/linuxnet/netns
APT_PACKAGES := iproute2 iptables nftables conntrack python3-venv python3-pyroute2 procps util-linux git make shellcheck
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export LC_ALL := C.UTF-8

.PHONY: help deps apt venv venv07 collection unit sanity integration integration-pyroute2-07 \
        connection molecule lint build-test test lab lab-down bench clean molecule-vm vm-down vm-apt

help:
	@sed -n '2,8p' Makefile

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: requirements.txt constraints.txt
	$(PYTHON_BOOT) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	touch $@

$(VENV07)/.installed: requirements.txt constraints.txt
	$(PYTHON_BOOT) -m venv $(VENV07)
	$(VENV07)/bin/pip install -q --disable-pip-version-check 'pyroute2==0.7.2' \
	  $$(grep -E '^(ansible-core|pytest)==' requirements.txt) -c constraints-pyroute2-0.7.txt
	touch $@

venv: $(VENV)/.installed
venv07: $(VENV07)/.installed

collection:
	@mkdir -p $(dir $(COLL_LINK))
	@[ -L $(COLL_LINK) ] || ln -sfn $(CURDIR) $(COLL_LINK)

deps: apt venv venv07 collection

unit: deps
	$(PY) -m pytest -q tests/unit

sanity: deps
	bash tests/sanity/run.sh

# Integration tests spread over two workers, a file per worker (fixtures are per file).
XDIST := -n 2 --dist loadfile
# The modules that talk netlink through pyroute2, run again with the pyroute2 Debian 12
# ships (0.7.2) as their interpreter; nat_rule uses it for the conntrack cleanup.
PYROUTE2_07_TESTS := tests/integration/test_netns.py tests/integration/test_veth.py \
  tests/integration/test_netns_route.py tests/integration/test_sysctl_forward.py \
  tests/integration/test_conntrack_info.py tests/integration/test_netns_probe.py \
  tests/integration/test_nat_rule.py tests/integration/test_nat_shared_snat.py \
  tests/integration/test_netns_session.py tests/integration/test_veth_batch.py

integration: deps
	$(PY) -m pytest -q $(XDIST) tests/integration

integration-pyroute2-07: deps
	LNT_MODULE_PYTHON=$(PY07) $(PY) -m pytest -q $(XDIST) -m 'not controller_only' $(PYROUTE2_07_TESTS)

molecule: deps
	bash tests/molecule/run.sh

lint: deps
	bash tests/lint/run.sh

# molecule/vm: two Debian 12 VMs (qemu; KVM when it boots here, else TCG), all their networking
# inside the namespace lnvm-net; the image is built once into .build/vm/ (from deb.debian.org).
VM_APT_PACKAGES := qemu-system-x86 qemu-utils mmdebstrap e2fsprogs lz4 openssh-client

vm-apt:
	@missing=$$(for p in $(VM_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

molecule-vm: deps vm-apt
	bash tests/molecule/run.sh vm

vm-down:
	$(PYTHON_BOOT) tests/vm/lnvm.py down

# The README's test command; .ci/run calls exactly this. LNT_SKIP_VM=1 leaves out molecule/vm
# locally (about 6 minutes); under CI it always runs.
RUN_VM := $(if $(and $(LNT_SKIP_VM),$(if $(CI),,yes)),,yes)
test: deps $(if $(RUN_VM),vm-apt)
	$(PY) -m pytest -q tests/unit
	$(PY) -m pytest -q $(XDIST) tests/integration
	LNT_MODULE_PYTHON=$(PY07) $(PY) -m pytest -q $(XDIST) -m 'not controller_only' $(PYROUTE2_07_TESTS)
	bash tests/sanity/run.sh
	bash tests/lint/run.sh
	bash tests/molecule/run.sh default multi nodeport shared-snat $(if $(RUN_VM),vm)

# SCENARIO=article (the default), a file of lab/scenarios/ (shared-snat: variables for the
# article's lab) or a lab of its own, inventory/lab-SCENARIO.yml (nodeport).
SCENARIO ?= article
LAB_INVENTORY := $(if $(wildcard inventory/lab-$(SCENARIO).yml),inventory/lab-$(SCENARIO).yml,inventory/lab.yml)
SCENARIO_VARS := $(if $(wildcard lab/scenarios/$(SCENARIO).yml),-e @lab/scenarios/$(SCENARIO).yml)
# make lab-down reads every lab inventory, so it removes whichever scenario is up (no SCENARIO needed).
LAB_INVENTORIES := inventory/lab.yml $(wildcard inventory/lab-*.yml)

lab: deps
	@[ "$(SCENARIO)" = article ] || [ -f lab/scenarios/$(SCENARIO).yml ] || [ -f inventory/lab-$(SCENARIO).yml ] || \
	  { echo "no lab scenario $(SCENARIO): see lab/scenarios/ and inventory/lab-*.yml"; exit 2; }
	ansible-playbook -i $(LAB_INVENTORY) $(SCENARIO_VARS) lab/up.yml
	ansible-playbook -i $(LAB_INVENTORY) $(SCENARIO_VARS) site.yml
	@echo "The lab is up (docs/LAB.md). Run 'make lab' again: changed=0. 'make lab-down' removes it."

lab-down: deps
	ansible-playbook $(addprefix -i ,$(LAB_INVENTORIES)) lab/down.yml

bench: deps
	$(PY) bench/run.py

clean:
	-$(PYTHON_BOOT) tests/vm/lnvm.py down
	rm -rf .build tests/output
