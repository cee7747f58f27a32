"""Whether the schedules and sensors run by themselves: one setting for all of them.

A fresh installation runs nothing until asked: opening the UI (``make ui``) must not change data,
deliver alerts or retrain models. Every schedule and sensor is therefore off by default; switch
them on one by one in the UI (Automation), with ``dagster schedule start`` / ``dagster sensor
start``, or all at once for a production deployment with ``CRM_PLATFORM_AUTOMATION=on`` in the
environment of the webserver and the daemon. A status set in the UI wins over the default.
"""

import dagster as dg

from crm_platform.core import settings


def schedule_status() -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if settings.automation_on() else dg.DefaultScheduleStatus.STOPPED


def sensor_status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if settings.automation_on() else dg.DefaultSensorStatus.STOPPED
