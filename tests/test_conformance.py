"""Every installed built-in component passes the conformance kit (third parties run the same kit)."""

from setforge.registry import Registry
from setforge.testing import check_component, parametrize_components

BUILTINS = Registry(use_env=False).load()


@parametrize_components(registry=BUILTINS)
def test_builtin_component_conforms(component_info):
    if component_info.distribution != "setforge":
        return
    check_component(component_info.cls)
