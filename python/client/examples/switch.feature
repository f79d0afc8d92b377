Feature: A state machine that is busy refuses commands

  Scenario: Switching on while a background switch-on runs
    Given the state machine mv1 is OFF
    When I switch it on in the background with a delay of 2 seconds
    And I switch it on again
    Then the command is refused as busy
    And the state machine becomes ON
