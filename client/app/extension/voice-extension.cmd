@echo off
rem Started by the Neutralino runtime (credentials on stdin).
set HERE=%~dp0
if exist "%HERE%node\node.exe" (set NODE=%HERE%node\node.exe) else (set NODE=node)
"%NODE%" "%HERE%app\client\dist\desktop\main.js" %*
