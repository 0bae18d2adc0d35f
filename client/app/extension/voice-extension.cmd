@echo off
rem Started by the Neutralino runtime (credentials on stdin).
rem UV_THREADPOOL_SIZE: see voice-extension (the Linux and macOS launcher).
set HERE=%~dp0
if "%UV_THREADPOOL_SIZE%"=="" set UV_THREADPOOL_SIZE=16
if exist "%HERE%node\node.exe" (set NODE=%HERE%node\node.exe) else (set NODE=node)
"%NODE%" "%HERE%app\client\dist\desktop\main.js" %*
