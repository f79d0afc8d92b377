from pytest_bdd import given, scenario, then, when

from switchyard_client import ApiError


@scenario("switch.feature", "Switching on while a background switch-on runs")
def test_busy_refusal():
    pass


@given("the state machine mv1 is OFF")
def mv1_off(switchyard):
    if not any(d["name"] == "mv1" for d in switchyard.devices()):
        switchyard.create_device("mv1", "mv")
    switchyard.command("mv1", "switch_off")
    switchyard.wait_for_state("mv1", "OFF")


@when("I switch it on in the background with a delay of 2 seconds")
def switch_on_in_background(switchyard):
    switchyard.background("mv1", "switch_on", duration=2)


@when("I switch it on again", target_fixture="refusal")
def switch_on_again(switchyard):
    try:
        switchyard.command("mv1", "switch_on")
    except ApiError as e:
        return e
    return None


@then("the command is refused as busy")
def refused_as_busy(refusal):
    assert refusal is not None and refusal.code == "busy", refusal


@then("the state machine becomes ON")
def becomes_on(switchyard):
    switchyard.wait_for_state("mv1", "ON", timeout=10)
