"""Filters over the NVIDIA driver role's package decisions (plugins/module_utils/nvidia_driver.py).

{{ 'Ubuntu' | localllm.fleet.nvidia_driver_package_plan('570', 'open', source='distro') }}
{{ madison.stdout | localllm.fleet.nvidia_driver_apt_resolution(plan, installed=packages) }}
{{ modules.stdout | localllm.fleet.nvidia_driver_dnf_streams(plan, repository) }}
{{ journal.stdout | localllm.fleet.nvidia_driver_fabricmanager_failure(result.msg) }}
{{ dnf_list.stdout | localllm.fleet.nvidia_driver_dnf_resolution(plan, installed=packages) }}
{{ query.stdout | localllm.fleet.nvidia_driver_installed_packages('apt') }}
"""

from __future__ import annotations

from ansible_collections.localllm.fleet.plugins.module_utils import nvidia_driver as driver
from ansible_collections.localllm.fleet.plugins.plugin_utils.filter_errors import as_filter


class FilterModule:
    """NVIDIA driver package filters."""

    def filters(self):
        return {
            "nvidia_driver_package_plan": as_filter(driver.package_plan, driver.PackageError),
            "nvidia_driver_apt_resolution": as_filter(driver.resolve_apt, driver.PackageError),
            "nvidia_driver_dnf_streams": as_filter(driver.dnf_stream_check, driver.PackageError),
            "nvidia_driver_dnf_resolution": as_filter(driver.resolve_dnf, driver.PackageError),
            "nvidia_driver_fabricmanager_failure": driver.fabricmanager_failure,
            "nvidia_driver_installed_packages": as_filter(
                driver.installed_packages, driver.PackageError
            ),
        }
